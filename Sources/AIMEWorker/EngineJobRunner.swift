import Generation

/// Turns a validated dialog into prompt token ids in the model's instruct format. The real one
/// is the Chat module's `InstructEncoder` (control tokens by id, never spliced into text).
public protocol JobPromptEncoder: Sendable {
    func encode(_ messages: [JobMessage]) throws -> [Int]
}

/// The real `ChatJobRunner`: encodes the dialog and submits it to the continuous-batching
/// `Engine`, so every job the worker admits joins the engine's running batch at its next step.
public struct EngineJobRunner: ChatJobRunner {
    public let engine: Engine
    public let encoder: any JobPromptEncoder

    public init(engine: Engine, encoder: any JobPromptEncoder) {
        self.engine = engine
        self.encoder = encoder
    }

    public func start(messages: [JobMessage], sampling: JobSampling) throws -> JobStream {
        let prompt = try encoder.encode(messages)
        let parameters = SamplingParameters(temperature: Float(sampling.temperature), topK: sampling.topK,
                                            topP: Float(sampling.topP), maxTokens: sampling.maxGenTokens)
        let handle = try engine.submit(promptTokens: prompt, sampling: parameters)
        let (events, continuation) = AsyncStream.makeStream(of: JobEvent.self)
        continuation.yield(.prompt(tokens: prompt.count))
        let forward = Task {
            var generated = 0
            for await event in handle.events {
                switch event {
                case .prefillProgress(let done, let total):
                    continuation.yield(.prefill(done: done, total: total))
                case .logprobs: break
                case .token(_, let text):
                    generated += 1
                    continuation.yield(.text(text, generatedTokens: generated))
                case .finished(let reason, let promptTokens, let generatedTokens, let error):
                    // The AIME result carries a string; the typed error's description has the numbers.
                    let failure: String?
                    switch reason {
                    case .stop, .length: failure = nil
                    case .cancelled: failure = (error ?? .cancelled).description
                    case .error: failure = error?.description ?? "generation failed"
                    }
                    continuation.yield(.finished(promptTokens: promptTokens, generatedTokens: generatedTokens,
                                                 error: failure))
                }
            }
            continuation.finish()
        }
        continuation.onTermination = { termination in
            if case .cancelled = termination {
                handle.cancel()
                forward.cancel()
            }
        }
        return JobStream(events: events, cancel: {
            handle.cancel()
        })
    }
}
