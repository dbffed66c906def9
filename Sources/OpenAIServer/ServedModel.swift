import Chat
import Generation
import Synchronization
import Tokenizers

/// What the server needs of a loaded model: the engine that runs requests, the encoder that
/// turns chat requests into prompt tokens (mistral-common's layout), and the tokenizer for
/// completion prompts, tool-call parsing and log-probability token texts.
public struct ServedModel: Sendable {
    public let engine: Engine
    public let encoder: InstructEncoder
    public let tokenizer: SentencePieceTokenizer
    /// The name `/v1/models` lists and requests must name (or omit).
    public let name: String
    /// Longest prompt + answer, in tokens.
    public var contextLength: Int { engine.model.maxSequenceLength }
    let toolCalls: ToolCallParser
    /// `[TOOL_CALLS]`, nil for a v1 tokenizer (no tools).
    var toolCallsTokenID: Int? { toolCalls.toolCallsTokenID }

    public init(engine: Engine, encoder: InstructEncoder, tokenizer: SentencePieceTokenizer, name: String) {
        self.engine = engine
        self.encoder = encoder
        self.tokenizer = tokenizer
        self.name = name
        self.toolCalls = ToolCallParser(tokenizer: tokenizer)
    }
}

/// The server's one piece of mutable state: the model once loading has finished (`/health` is
/// 503 until then), and whether a shutdown has begun (new generations are then refused).
public final class ModelSlot: Sendable {
    public enum State: Sendable {
        case loading
        case ready(ServedModel)
        case failed(String)
    }

    private let state = Mutex(State.loading)

    public init() {}

    public init(_ model: ServedModel) { state.withLock { $0 = .ready(model) } }

    public var current: State { state.withLock { $0 } }

    public func set(_ new: State) { state.withLock { $0 = new } }

    /// The model, or the API error a request gets while there is none.
    func model() throws(APIError) -> ServedModel {
        switch current {
        case .ready(let model): return model
        case .loading: throw APIError(status: 503, type: .serverError, code: "model_loading", "the model is still loading")
        case .failed(let why): throw APIError(status: 503, type: .serverError, code: "model_unavailable", "the model failed to load: \(why)")
        }
    }
}
