/// libFuzzer target: chat-request decoding (`ChatRequest(jsonUTF8:)`: the JSON parser plus the
/// OpenAI-shape message/tool decoding and validation) and the tool-call parser
/// (`ToolCallParser.parseCalls`) on the same bytes, read as the text after `[TOOL_CALLS]`.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzChatRequestJSON(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = [UInt8](UnsafeBufferPointer(start: data, count: size))
    _ = try? ChatRequest(jsonUTF8: bytes)
    _ = try? ToolCallParser.parseCalls(String(decoding: bytes, as: UTF8.self), makeID: { "abcdefghi" })
    return 0
}
