/// The tarballs Mistral publishes for the models this project runs (the table in docs/models.md),
/// with every md5 each file is known to have had: a file that was re-published gets a new sum,
/// and a failed check says which sums it compared against.
public struct CatalogEntry: Sendable, Equatable {
    public struct KnownSum: Sendable, Equatable {
        public let md5: String
        /// Where the sum comes from or when it was valid.
        public let note: String

        public init(md5: String, note: String) {
            self.md5 = md5
            self.note = note
        }
    }

    public let name: String
    public let model: String
    public let url: String
    /// Current first.
    public let sums: [KnownSum]
    /// Approximate tarball size, for --list and the free-space check before the server answers.
    public let approximateBytes: Int64
    public let notes: String

    public var md5s: [String] { sums.map(\.md5) }
}

public enum ModelCatalog {
    static let gb: Int64 = 1_000_000_000

    public static let entries: [CatalogEntry] = [
        CatalogEntry(
            name: "mistral-7b-instruct-v0.3", model: "Mistral 7B Instruct v0.3",
            url: "https://models.mistralcdn.com/mistral-7b-v0-3/mistral-7B-Instruct-v0.3.tar",
            sums: [.init(md5: "80b71fcb6416085bcb4efad86dfb4d52", note: "current")],
            approximateBytes: 145 * gb / 10, notes: "v3 tokenizer, function calling; Apache 2.0"),
        CatalogEntry(
            name: "mistral-7b-v0.3", model: "Mistral 7B Base v0.3",
            url: "https://models.mistralcdn.com/mistral-7b-v0-3/mistral-7B-v0.3.tar",
            sums: [.init(md5: "0663b293810d7571dad25dae2f2a5806", note: "current")],
            approximateBytes: 145 * gb / 10, notes: "v3 tokenizer; Apache 2.0"),
        CatalogEntry(
            name: "mixtral-8x7b-instruct-v0.1", model: "Mixtral 8x7B Instruct v0.1",
            url: "https://models.mistralcdn.com/mixtral-8x7b-v0-1/Mixtral-8x7B-v0.1-Instruct.tar",
            sums: [.init(md5: "8e2d3930145dc43d3084396f49d38a3f", note: "current")],
            approximateBytes: 93 * gb, notes: "older tarball: consolidated.00.pth, tokenizer.model (v1); Apache 2.0"),
        CatalogEntry(
            name: "mixtral-8x22b-instruct-v0.3", model: "Mixtral 8x22B Instruct (HF v0.1 weights, safetensors)",
            url: "https://models.mistralcdn.com/mixtral-8x22b-v0-3/mixtral-8x22B-Instruct-v0.3.tar",
            sums: [.init(md5: "471a02a6902706a2f1e44a693813855b", note: "current")],
            approximateBytes: 281 * gb, notes: "v3 tokenizer, function calling; Apache 2.0"),
        CatalogEntry(
            name: "mixtral-8x22b-v0.3", model: "Mixtral 8x22B Base (v0.1 with a 32,768-token vocabulary)",
            url: "https://models.mistralcdn.com/mixtral-8x22b-v0-3/mixtral-8x22B-v0.3.tar",
            sums: [.init(md5: "a2fa75117174f87d1197e3a4eb50371a", note: "current")],
            approximateBytes: 281 * gb, notes: "v3 tokenizer; Apache 2.0"),
        CatalogEntry(
            name: "codestral-22b-v0.1", model: "Codestral 22B v0.1",
            url: "https://models.mistralcdn.com/codestral-22b-v0-1/codestral-22B-v0.1.tar",
            sums: [.init(md5: "1ea95d474a1d374b1d1b20a8e0159de3", note: "current, since 2024-05-30"),
                   .init(md5: "a5661f2f6c6ee4d6820a2f68db934c5d", note: "before 2024-05-30 (older tables still list it)")],
            approximateBytes: 44 * gb, notes: "v3 tokenizer, fill-in-the-middle; Mistral AI Non-Production License"),
    ]

    public static func entry(named name: String) -> CatalogEntry? {
        entries.first { $0.name == name.lowercased() }
    }
}
