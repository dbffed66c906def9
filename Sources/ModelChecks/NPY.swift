import Foundation

/// Reads the little-endian float32 C-order `.npy` files the fixture scripts write
/// (tools/fixtures/*.py, `numpy.save`).
public enum NPY {
    public struct Array2D: Sendable { public var shape: [Int]; public var values: [Float] }

    public struct FormatError: Error, CustomStringConvertible {
        public let description: String
    }

    public static func readFloat32(_ url: URL) throws -> Array2D {
        let bytes = [UInt8](try Data(contentsOf: url))
        let name = url.lastPathComponent
        guard bytes.count > 10, bytes[0] == 0x93, String(decoding: bytes[1...5], as: UTF8.self) == "NUMPY" else {
            throw FormatError(description: "\(name): not an .npy file")
        }
        let (headerLen, start) = bytes[6] == 1 ? (Int(bytes[8]) | Int(bytes[9]) << 8, 10)
            : (Int(bytes[8]) | Int(bytes[9]) << 8 | Int(bytes[10]) << 16 | Int(bytes[11]) << 24, 12)
        guard start + headerLen <= bytes.count else { throw FormatError(description: "\(name): truncated header") }
        let header = String(decoding: bytes[start..<(start + headerLen)], as: UTF8.self)
        guard header.contains("'descr': '<f4'"), header.contains("'fortran_order': False") else {
            throw FormatError(description: "\(name): expected little-endian float32 C order, header \(header)")
        }
        guard let open = header.range(of: "'shape': ("), let close = header[open.upperBound...].firstIndex(of: ")") else {
            throw FormatError(description: "\(name): no shape in header \(header)")
        }
        let shape = header[open.upperBound..<close].split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
        let count = shape.reduce(1, *)
        let body = start + headerLen
        guard bytes.count - body == count * 4 else {
            throw FormatError(description: "\(name): \(bytes.count - body) data bytes for shape \(shape)")
        }
        var values = [Float](repeating: 0, count: count)
        values.withUnsafeMutableBytes { dst in
            bytes.withUnsafeBytes { src in dst.copyMemory(from: UnsafeRawBufferPointer(rebasing: src[body...])) }
        }
        return Array2D(shape: shape, values: values)
    }
}
