// swift-tools-version:6.1
import PackageDescription

/// Dependency direction (see docs/architecture.md):
/// Tensors ← Checkpoints, CPUBackend, CUDABackend(← CUDADriver), Model
/// Tokenizers ← Chat ← Generation(← Model) ← AIMEWorker ← mixtral-chat
/// Downloads (AsyncHTTPClient, swift-crypto) ← mixtral-chat
let optimize: [SwiftSetting] = [.unsafeFlags(["-Ounchecked", "-wmo"], .when(configuration: .release))]

let package = Package(
    name: "MixtralChat",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "mixtral-chat", targets: ["mixtral-chat"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
        .package(url: "https://github.com/swift-server/async-http-client", from: "1.21.0"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.65.0"),
        .package(url: "https://github.com/apple/swift-crypto", "3.12.3"..<"5.0.0"),
        // The HTTP server (`serve`). Hummingbird's optional traits (swift-configuration, full
        // Foundation) are left off: the server reads its settings from the CLI.
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1", traits: []),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/apple/swift-http-types", from: "1.8.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-collections", from: "1.1.0"),
    ],
    targets: [
        .target(name: "Tensors", swiftSettings: optimize),
        .target(name: "Checkpoints", dependencies: ["Tensors"]),
        .target(name: "Tokenizers"),
        .target(name: "Chat", dependencies: ["Tokenizers"]),
        .target(name: "Model", dependencies: ["Tensors", "Checkpoints"], swiftSettings: optimize),
        // CPU kernels are written for AVX2 + FMA + F16C (any x86-64 server since 2013): the
        // bf16/f16 widening and FMAs compile to 256-bit vector instructions.
        .target(name: "CPUBackend", dependencies: ["Tensors"],
                swiftSettings: optimize + [.unsafeFlags(["-target-cpu", "haswell"])]),
        .target(name: "CUDADriver", swiftSettings: optimize),
        .target(name: "CUDABackend", dependencies: ["Tensors", "CUDADriver"],
                resources: [.embedInCode("Kernels")], swiftSettings: optimize),
        .target(name: "BackendConformance", dependencies: ["Tensors"]),
        // The forward pass checked on fixture models, once for every backend (swift test, cuda-check).
        .target(name: "ModelChecks", dependencies: ["BackendConformance", "Checkpoints", "Model", "Tensors"]),
        // The bytes and FLOPs of a forward step (the roofline of `bench` and `cuda-check --bench`).
        .target(name: "Roofline", dependencies: ["Checkpoints"]),
        .executableTarget(name: "cuda-check",
                          dependencies: ["CUDADriver", "CUDABackend", "CPUBackend", "BackendConformance", "Tensors",
                                         "Model", "Checkpoints", "Roofline", "ModelChecks"]),
        .target(name: "Generation", dependencies: ["Model", "Tensors", "Chat", "Tokenizers"]),
        .target(name: "DemoEvaluation", dependencies: ["Generation", "Chat", "Tokenizers"]),
        // Loads a checkpoint onto a device and builds the model and engine: what every front-end
        // (the CLI's commands, the worker, the HTTP server) shares.
        .target(name: "Runtime",
                dependencies: ["Tensors", "Checkpoints", "Tokenizers", "Chat", "Model", "CPUBackend", "CUDABackend",
                               "CUDADriver", "Generation"]),
        // `mixtral-chat serve`: the OpenAI-compatible HTTP front-end over one Engine.
        .target(
            name: "OpenAIServer",
            dependencies: [
                "Generation", "Chat", "Tokenizers",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ]),
        .executableTarget(
            name: "mixtral-chat",
            dependencies: [
                "Tensors", "Checkpoints", "Tokenizers", "Chat", "Model", "CPUBackend", "CUDABackend", "CUDADriver",
                "Generation", "DemoEvaluation", "AIMEWorker", "Runtime", "Downloads", "OpenAIServer", "Roofline",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]),
        // `mixtral-chat download`: streaming tar extraction over HTTP with md5 and resume.
        .target(
            name: "Downloads",
            dependencies: [
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ]),
        .target(
            name: "AIMEWorker",
            dependencies: [
                "Generation", "Chat", "Tokenizers",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "DequeModule", package: "swift-collections"),
                .product(name: "Logging", package: "swift-log"),
            ]),
        // What the test targets share: fixture paths, CPU model assembly, test-double decoders.
        .target(name: "TestSupport", dependencies: ["CPUBackend", "Checkpoints", "Generation", "Model"], path: "Tests/TestSupport"),
        .testTarget(name: "TensorsTests", dependencies: ["Tensors"], exclude: ["Fixtures"]),
        .testTarget(
            name: "DownloadsTests",
            dependencies: [
                "Downloads",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ],
            exclude: ["Fixtures"]),
        .testTarget(
            name: "AIMEWorkerTests",
            dependencies: [
                "AIMEWorker", "Generation", "Model", "Checkpoints", "CPUBackend", "Chat", "Tokenizers", "TestSupport",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            exclude: ["Fixtures"]),
        .testTarget(name: "DemoModelTests",
                    dependencies: ["DemoEvaluation", "Generation", "Model", "CPUBackend", "Checkpoints", "Chat", "Tokenizers", "Runtime",
                                   "TestSupport"]),
        .testTarget(name: "GenerationTests", dependencies: ["Generation", "Model", "Checkpoints", "TestSupport"]),
        .testTarget(name: "CheckpointsTests", dependencies: ["Checkpoints", "Tensors"], exclude: ["Fixtures"]),
        .testTarget(name: "RooflineTests", dependencies: ["Roofline", "Checkpoints"]),
        .testTarget(name: "CPUBackendTests", dependencies: ["CPUBackend", "Tensors"]),
        .testTarget(name: "CUDADriverTests", dependencies: ["CUDADriver"]),
        .testTarget(name: "CUDABackendTests",
                    dependencies: ["CUDABackend", "CUDADriver", "CPUBackend", "BackendConformance", "Tensors"]),
        .testTarget(name: "ModelTests", dependencies: ["Model", "CPUBackend", "Checkpoints", "Tensors", "ModelChecks", "BackendConformance",
                                                      "TestSupport"],
                    exclude: ["Fixtures"]),
        .testTarget(name: "TokenizersTests", dependencies: ["Tokenizers"], resources: [.copy("Fixtures")]),
        .testTarget(name: "OpenAIServerTests",
                    dependencies: ["OpenAIServer", "Generation", "Chat", "Tokenizers", "Model", "Checkpoints", "CPUBackend", "TestSupport",
                                   .product(name: "Hummingbird", package: "hummingbird"),
                                   .product(name: "HummingbirdTesting", package: "hummingbird"),
                                   .product(name: "HTTPTypes", package: "swift-http-types"),
                                   .product(name: "NIOCore", package: "swift-nio")]),
        .testTarget(name: "ChatTests", dependencies: ["Chat", "Tokenizers"], exclude: ["Fixtures"]),
    ]
)
