/// Why a download stopped. `resumable` says whether running the same command again continues
/// from where it stopped (the message says so too); every kind leaves the folder in a state the
/// next run can either resume or report on — never a folder marked complete that is not.
public struct DownloadError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Kind: String, Sendable, Equatable {
        case unknownModel
        case http               // a status other than 200/206, or a malformed Content-Range
        case network            // connection refused, reset, timed out
        case truncated          // the body ended before the bytes the server announced
        case diskFull           // not enough free space, or a write failed with ENOSPC
        case io                 // any other file-system error
        case unsafeArchive      // an entry that would land outside the folder, or a link
        case corruptArchive     // not a tar stream, a bad header, a stream without its end marker
        case checksumMismatch   // the md5 of the whole tarball is not a known one
        case conflict           // the folder holds something this download did not write
    }

    public let kind: Kind
    public let message: String
    public let resumable: Bool

    public init(_ kind: Kind, _ message: String, resumable: Bool) {
        self.kind = kind
        self.message = message
        self.resumable = resumable
    }

    public var description: String {
        resumable ? message + "; run the same command again to resume" : message
    }
}
