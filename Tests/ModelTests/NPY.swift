import Foundation

/// Reads the little-endian float32 C-order `.npy` files the fixture scripts write.
enum NPY {
    struct Array2D { var shape: [Int]; var values: [Float] }

    static func readFloat32(_ url: URL) throws -> Array2D {
        let data = try Data(contentsOf: url)
        let bytes = [UInt8](data)
        guard bytes.count > 10, bytes[0] == 0x93, String(decoding: bytes[1...5], as: UTF8.self) == "NUMPY" else {
            throw NPYError.format("\(url.lastPathComponent): not an .npy file")
        }
        let major = bytes[6]
        let headerLen: Int, start: Int
        if major == 1 { headerLen = Int(bytes[8]) | Int(bytes[9]) << 8; start = 10 } else {
            headerLen = Int(bytes[8]) | Int(bytes[9]) << 8 | Int(bytes[10]) << 16 | Int(bytes[11]) << 24; start = 12
        }
        let header = String(decoding: bytes[start..<(start + headerLen)], as: UTF8.self)
        guard header.contains("'descr': '<f4'"), header.contains("'fortran_order': False") else {
            throw NPYError.format("\(url.lastPathComponent): expected little-endian float32 C order, header \(header)")
        }
        guard let open = header.range(of: "'shape': ("), let close = header[open.upperBound...].firstIndex(of: ")") else {
            throw NPYError.format("no shape")
        }
        let shape = header[open.upperBound..<close].split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
        let count = shape.reduce(1, *)
        let body = start + headerLen
        guard bytes.count - body == count * 4 else { throw NPYError.format("size mismatch") }
        var values = [Float](repeating: 0, count: count)
        values.withUnsafeMutableBytes { dst in
            bytes.withUnsafeBytes { src in dst.copyMemory(from: UnsafeRawBufferPointer(rebasing: src[body...])) }
        }
        return Array2D(shape: shape, values: values)
    }

    enum NPYError: Error { case format(String) }
}
