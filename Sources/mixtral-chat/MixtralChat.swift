import ArgumentParser

/// `mixtral-chat`: chat, generate, serve AIME jobs and benchmark Mistral-family models.
@main
struct MixtralChat: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mixtral-chat",
        abstract: "Run Mistral, Mixtral and Codestral models from their released weights.",
        discussion: """
            Without --ckpt-dir, commands use the bundled demo model Chloe-tiny (see `mixtral-chat \
            where-is-demo`).
            """,
        subcommands: [Chat.self, Generate.self, Serve.self, Worker.self, Download.self, Tokenize.self, EncodeChat.self, Bench.self, EvalDemo.self,
                      Quantize.self, CompareQuantization.self, WhereIsDemo.self],
        defaultSubcommand: nil)
}
