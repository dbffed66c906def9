/// A tar entry's path, checked before anything is written: relative, no `..`, no NUL, so every
/// entry lands inside the destination folder. "./" components and repeated slashes are dropped
/// (tar writes "./params.json" when run as `tar -cf x.tar .`).
public struct SafePath: Sendable, Equatable {
    public let raw: String
    public let components: [String]

    /// The path joined with "/" (empty for the archive root).
    public var relative: String { components.joined(separator: "/") }

    public static func validate(_ raw: String, at offset: Int64) throws(TarReader.Failure) -> SafePath {
        func refuse(_ why: String) -> TarReader.Failure {
            TarReader.Failure(kind: .unsafePath, message: "unsafe path '\(raw)' in the archive at byte \(offset): \(why); nothing was written outside the folder")
        }
        if raw.hasPrefix("/") { throw refuse("absolute paths are not extracted") }
        if raw.utf8.contains(0) { throw refuse("it contains a NUL byte") }
        var parts: [String] = []
        for part in raw.split(separator: "/", omittingEmptySubsequences: true) {
            if part == "." { continue }
            if part == ".." { throw refuse("'..' would leave the folder") }
            parts.append(String(part))
        }
        return SafePath(raw: raw, components: parts)
    }
}
