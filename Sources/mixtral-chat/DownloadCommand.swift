import ArgumentParser
import Downloads
import Foundation
import Runtime

struct Download: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Download and unpack one of Mistral's model tarballs, with md5 check and resume.",
        discussion: """
            The tarball is extracted while it streams (no copy of the tar on disk) into DIR/NAME, \
            which --ckpt-dir then loads as it is. An interrupted download resumes where it \
            stopped when the same command is run again; the folder is marked complete only when \
            the tarball's md5 is one of the known sums. --list shows the models; --url with --md5 \
            downloads any other tarball.
            """)

    @Argument(help: "Model name (see --list).") var name: String?
    @Option(help: "Folder to download into; the model lands in DIR/NAME.") var dir: String = "models"
    @Flag(help: "List the models that can be downloaded by name.") var list = false
    @Option(help: "Download this tarball instead of a named model (needs --md5).") var url: String?
    @Option(help: "The tarball's md5 (hex). With a name: accept this sum as well (a re-published file).") var md5: String?

    func validate() throws {
        if list { return }
        if url != nil {
            guard md5 != nil else { throw ValidationError("--url needs --md5 HEX (the sum to check the tarball against)") }
        } else if name == nil {
            throw ValidationError("give a model NAME (see --list), or --url URL --md5 HEX")
        }
        if let md5, md5.count != 32 || !md5.allSatisfy(\.isHexDigit) {
            throw ValidationError("--md5 must be 32 hexadecimal digits, got '\(md5)'")
        }
    }

    func run() async throws {
        if list {
            printList()
            return
        }
        let job: DownloadJob
        if let url {
            let folder = name ?? URL(string: url).map { ($0.lastPathComponent as NSString).deletingPathExtension } ?? "download"
            job = DownloadJob(url: url, destination: URL(fileURLWithPath: dir).appendingPathComponent(folder),
                              sums: [.init(md5: md5!.lowercased(), note: "--md5")])
        } else {
            guard let entry = ModelCatalog.entry(named: name ?? "") else {
                printError("unknown model '\(name ?? "")'; known: \(ModelCatalog.entries.map(\.name).joined(separator: ", "))")
                throw ExitCode(1)
            }
            var sums = entry.sums
            if let md5 { sums.append(.init(md5: md5.lowercased(), note: "--md5")) }
            job = DownloadJob(url: entry.url, destination: URL(fileURLWithPath: dir).appendingPathComponent(entry.name),
                              sums: sums, approximateBytes: entry.approximateBytes)
        }
        let downloader = Downloader(
            progress: { line in FileHandle.standardError.write(Data(line.utf8)) },
            log: { line in FileHandle.standardError.write(Data((line + "\n").utf8)) })
        FileHandle.standardError.write(Data("downloading \(job.url)\n  into \(job.destination.path)\n".utf8))
        do {
            switch try await downloader.run(job) {
            case .alreadyComplete(let md5):
                print("\(job.destination.path) is already complete (md5 \(md5)).")
            case .completed(let md5, let bytes, _, _):
                print("\(job.destination.path) is complete: \(bytes) bytes, md5 \(md5) verified.")
            }
            print("Run it with: mixtral-chat chat --ckpt-dir \(job.destination.path)")
        } catch {
            printError("download failed: \(error)")
            throw ExitCode(1)
        }
    }

    private func printList() {
        print("Models (mixtral-chat download NAME [--dir DIR]):")
        for e in ModelCatalog.entries {
            let size = String(format: "%.1f GB", Double(e.approximateBytes) / 1e9)
            print("  \(e.name.padding(toLength: 30, withPad: " ", startingAt: 0)) \(size.padding(toLength: 9, withPad: " ", startingAt: 0)) \(e.model)")
            print("  \(String(repeating: " ", count: 30)) md5 \(e.sums.map { "\($0.md5) (\($0.note))" }.joined(separator: ", "))")
            print("  \(String(repeating: " ", count: 30)) \(e.notes)")
        }
        print("Sizes are approximate; see docs/models.md for what each needs to run.")
    }
}
