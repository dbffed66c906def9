import CUDADriver

/// `--device`: cpu, cuda or cuda:N; without it, the first GPU when one is present, else the CPU.
public enum DeviceChoice: Equatable, Sendable {
    case cpu
    case cuda(Int)

    public static func parse(_ text: String?) throws -> DeviceChoice {
        guard let text else { return CUDAProbe.probe().isAvailable ? .cuda(0) : .cpu }
        if text == "cpu" { return .cpu }
        if text == "cuda" || text == "gpu" { return .cuda(0) }
        if text.hasPrefix("cuda:"), let n = Int(text.dropFirst(5)), n >= 0 { return .cuda(n) }
        throw ModelRuntime.LoadError.badDevice(text)
    }
}
