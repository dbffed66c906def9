import Foundation

extension InstructVersion {
    /// The version a tokenizer file's name declares, as mistral-common decides it
    /// (`tokenizer.model.v3` → v3), or nil for a name without a version suffix.
    ///
    /// A plain `tokenizer.model` that sits next to a `tokenizer.model.vN` with the same bytes
    /// takes that version too (checkpoints such as the demo model ship both), because a
    /// vocabulary alone cannot always tell v2 from v3: a v3-format tokenizer without the `[IMG]`
    /// / `[PREFIX]` pieces looks like v2, yet mistral-common encodes it as v3 by its file name.
    public static func declared(byFile url: URL) -> InstructVersion? {
        let name = url.lastPathComponent
        for version in InstructVersion.allCases.reversed() where name.hasSuffix(".model.\(version.rawValue)") {
            return version
        }
        guard let bytes = FileManager.default.contents(atPath: url.path) else { return nil }
        let folder = url.deletingLastPathComponent()
        for version in InstructVersion.allCases.reversed() {
            let sibling = folder.appendingPathComponent("\(name).\(version.rawValue)")
            if let other = FileManager.default.contents(atPath: sibling.path), other == bytes { return version }
        }
        return nil
    }
}
