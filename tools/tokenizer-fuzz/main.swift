import Foundation
// usage: fuzz MODEL < texts.jsonl > out.jsonl   (each line {"text": s} or {"ids": [..]})
let tok = try SentencePieceTokenizer(contentsOf: URL(fileURLWithPath: CommandLine.arguments[1]))
let input = FileHandle.standardInput.readDataToEndOfFile()
var out = ""
for line in input.split(separator: 10) {
    let obj = try JSONSerialization.jsonObject(with: Data(line)) as! [String: Any]
    if let t = obj["text"] as? String {
        let ids = tok.encode(t)
        let d = try JSONSerialization.data(withJSONObject: ["ids": ids, "decode": tok.decode(ids)])
        out += String(decoding: d, as: UTF8.self) + "\n"
    } else {
        let ids = obj["ids"] as! [Int]
        var s = StreamingDetokenizer(tokenizer: tok)
        var streamed = ""
        for id in ids { streamed += s.append(id) }
        streamed += s.finish()
        let d = try JSONSerialization.data(withJSONObject: ["decode": tok.decode(ids), "stream": streamed])
        out += String(decoding: d, as: UTF8.self) + "\n"
    }
}
FileHandle.standardOutput.write(out.data(using: .utf8)!)
