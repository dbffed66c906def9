import Foundation

/// Finds the bundled demo model (Chloe-tiny) when no `--ckpt-dir` is given.
///
/// Search order, first hit wins:
/// 1. `$MIXTRAL_CHAT_DEMO_DIR`
/// 2. `<dir of the executable>/chloe-tiny` and `<dir>/../share/mixtral-chat/chloe-tiny`
///    (an installed binary: copy `models/chloe-tiny` next to it or into that share folder)
/// 3. `models/chloe-tiny` in the source tree this binary was built from (`swift run` in a clone)
public enum DemoModel {
    public static let folderName = "chloe-tiny"

    public static var candidates: [URL] {
        var list: [URL] = []
        if let env = ProcessInfo.processInfo.environment["MIXTRAL_CHAT_DEMO_DIR"], !env.isEmpty {
            list.append(URL(fileURLWithPath: env))
        }
        if let exe = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") {
            let dir = URL(fileURLWithPath: exe).deletingLastPathComponent()
            list.append(dir.appendingPathComponent(folderName))
            list.append(dir.deletingLastPathComponent().appendingPathComponent("share/mixtral-chat/\(folderName)"))
        }
        let sourceRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        list.append(sourceRoot.appendingPathComponent("models/\(folderName)"))
        return list
    }

    public static func locate() -> URL? {
        candidates.first { FileManager.default.fileExists(atPath: $0.appendingPathComponent("params.json").path) }
    }
}
