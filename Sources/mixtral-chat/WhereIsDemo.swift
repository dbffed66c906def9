import ArgumentParser
import Runtime

struct WhereIsDemo: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "where-is-demo", abstract: "Print where the bundled demo model is looked for and which folder is used.")

    func run() throws {
        for url in DemoModel.candidates { print(url.path) }
        if let found = DemoModel.locate() { print("using: \(found.path)") } else { print("demo model not found") }
    }
}
