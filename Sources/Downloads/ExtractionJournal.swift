import Foundation

/// The state of a download in progress, kept beside the destination folder in
/// `<dir>/.<name>.download/` so that nothing in the folder itself can collide with it:
/// `state.json` (the checkpoint) and `metadata.log` (the tar stream's non-file bytes; see
/// `StreamingExtractor`). Removed once the folder is complete.
final class ExtractionJournal {
    struct State: Codable, Equatable {
        var url: String
        /// Stream bytes safely extracted (files synced) — where the next request resumes.
        var streamBytes: Int64 = 0
        /// Bytes of `metadata.log` that belong to those stream bytes.
        var metadataBytes: Int64 = 0
        /// The tarball's size as the server announced it, and its validators: a resume that gets
        /// a different size or ETag is a different file, so the download starts over.
        var totalBytes: Int64?
        var etag: String?
        var lastModified: String?
    }

    let folder: URL
    private(set) var state: State

    var stateURL: URL { folder.appendingPathComponent("state.json") }
    var metadataURL: URL { folder.appendingPathComponent("metadata.log") }

    /// The journal for `destination`, read back if one exists for the same URL.
    init(destination: URL, url: String) throws(DownloadError) {
        folder = destination.deletingLastPathComponent().appendingPathComponent(".\(destination.lastPathComponent).download")
        state = State(url: url)
        if let data = FileManager.default.contents(atPath: stateURL.path) {
            guard let saved = try? JSONDecoder().decode(State.self, from: data) else {
                throw DownloadError(.conflict, "\(stateURL.path) is not a download journal this version can read; delete \(folder.path) and \(destination.path) to start over", resumable: false)
            }
            guard saved.url == url else {
                throw DownloadError(.conflict, "\(destination.path) is a download of \(saved.url) in progress, not of \(url); use another --dir or delete it", resumable: false)
            }
            state = saved
        }
    }

    var exists: Bool { FileManager.default.fileExists(atPath: stateURL.path) }

    func save(_ new: State) throws(DownloadError) {
        try FileSystem.makeDirectory(folder)
        let data: Data
        do { data = try JSONEncoder().encode(new) } catch {
            throw DownloadError(.io, "cannot encode the download journal: \(error)", resumable: true)
        }
        try FileSystem.writeAtomically(data, to: stateURL)
        state = new
    }

    /// Forgets the progress (a new file on the server, or extracted files that no longer match).
    func reset() throws(DownloadError) {
        try? FileManager.default.removeItem(at: folder)
        state = State(url: state.url)
        try save(state)
    }

    func remove() { try? FileManager.default.removeItem(at: folder) }
}
