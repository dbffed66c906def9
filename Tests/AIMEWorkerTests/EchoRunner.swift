import AIMEWorker
import Foundation
import NIOConcurrencyHelpers

/// TEST DOUBLE for the generation side: a deterministic `ChatJobRunner` with no model.
///
/// Its answer to a dialog is `You said: <last user message> . Dialog had <n> messages .`, one
/// whitespace-separated word per "token", each after `tokenDelay` (words after the first carry
/// their leading space, so the concatenated deltas are the answer). The prompt "has" 3 tokens per
/// message plus one per word. Control words in the last user message drive failure tests:
/// - `SLOW`: 10 × `tokenDelay` per token;
/// - `PREFILL`: waits `prefillDelay` before the first token (a long prefill);
/// - `REFUSE`: `start` throws (the encoder rejected the dialog);
/// - `HUGE`: the prompt claims 1,000,000 tokens.
/// It records when each job started and ended, and which were cancelled, keyed by the last user
/// message.
final class EchoRunner: ChatJobRunner {
    struct Refused: Error, CustomStringConvertible {
        var description: String { "the model's instruct format refused this dialog" }
    }

    struct Record: Sendable {
        var started: ContinuousClock.Instant
        var ended: ContinuousClock.Instant?
        var cancelled = false
        var sampling: JobSampling
        var messages: [JobMessage]
    }

    let tokenDelay: Duration
    let prefillDelay: Duration
    private let records = NIOLockedValueBox<[String: Record]>([:])

    init(tokenDelay: Duration = .milliseconds(10), prefillDelay: Duration = .seconds(1)) {
        self.tokenDelay = tokenDelay
        self.prefillDelay = prefillDelay
    }

    func record(_ label: String) -> Record? { records.withLockedValue { $0[label] } }
    var allRecords: [String: Record] { records.withLockedValue { $0 } }

    static func answer(to messages: [JobMessage]) -> [String] {
        let last = messages.last(where: { $0.role == .user })?.content ?? ""
        let words = "You said: \(last) . Dialog had \(messages.count) messages .".split(separator: " ")
        return words.enumerated().map { $0.offset == 0 ? String($0.element) : " " + $0.element }
    }

    static func promptTokens(_ messages: [JobMessage]) -> Int {
        messages.reduce(0) { $0 + 3 + $1.content.split(separator: " ").count }
    }

    func start(messages: [JobMessage], sampling: JobSampling) throws -> JobStream {
        let label = messages.last(where: { $0.role == .user })?.content ?? ""
        if label.contains("REFUSE") { throw Refused() }
        records.withLockedValue {
            $0[label] = Record(started: .now, sampling: sampling, messages: messages)
        }
        let pieces = Self.answer(to: messages)
        let prompt = label.contains("HUGE") ? 1_000_000 : Self.promptTokens(messages)
        let delay = label.contains("SLOW") ? tokenDelay * 10 : tokenDelay
        let prefill = label.contains("PREFILL") ? prefillDelay : .zero
        let (events, continuation) = AsyncStream.makeStream(of: JobEvent.self)
        let records = self.records
        let task = Task {
            continuation.yield(.prompt(tokens: prompt))
            do {
                if prefill > .zero { try await Task.sleep(for: prefill) }
                var generated = 0
                for piece in pieces.prefix(sampling.maxGenTokens) {
                    try await Task.sleep(for: delay)
                    generated += 1
                    continuation.yield(.text(piece, generatedTokens: generated))
                }
                continuation.yield(.finished(promptTokens: prompt, generatedTokens: generated, error: nil))
            } catch {
                records.withLockedValue { $0[label]?.cancelled = true }
            }
            records.withLockedValue { $0[label]?.ended = .now }
            continuation.finish()
        }
        return JobStream(events: events, cancel: { task.cancel() })
    }
}
