import Foundation

/// libFuzzer target: params.json (native `ModelConfig`) and config.json (`HFConfig`) through
/// `decodeJSONFile` + `validate`, the calls `MistralCheckpoint.loadConfig` makes, on the same file.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzModelConfigJSON(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    // Foundation's `Data(contentsOf:)` leaks a 4 KB buffer reading an *empty* file (swift 6.3.1,
    // FoundationEssentials readBytesFromFile); LeakSanitizer would flag every run on that, not
    // our code, so the empty input is skipped. docs/reliability.md records it.
    guard size > 0 else { return 0 }
    let url = FuzzScratch.write(data, size)
    if let config = try? decodeJSONFile(ModelConfig.self, url) {
        try? config.validate(file: "params.json")
    }
    if let hf = try? decodeJSONFile(HFConfig.self, url) {
        try? hf.modelConfig.validate(file: "config.json")
    }
    return 0
}
