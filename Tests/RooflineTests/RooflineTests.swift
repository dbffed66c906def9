import Testing
import Checkpoints
import Roofline

@Suite struct RooflineTests {
    /// Every way `batch` tokens can each pick `topK` distinct experts of `experts`, equally
    /// likely: the mean number of distinct experts picked, by enumeration.
    static func enumeratedExpertsTouched(experts: Int, topK: Int, batch: Int) -> Double {
        // The K-subsets of E experts as bit masks.
        let subsets = (0..<(1 << experts)).filter { $0.nonzeroBitCount == topK }
        var total = 0, count = 0
        func walk(_ token: Int, _ union: Int) {
            if token == batch { total += union.nonzeroBitCount; count += 1; return }
            for s in subsets { walk(token + 1, union | s) }
        }
        walk(0, 0)
        return Double(total) / Double(count)
    }

    @Test(arguments: [(2, 1), (3, 1), (3, 2), (4, 2), (8, 2), (8, 1), (6, 3), (4, 4)])
    func expectedExpertsTouchedMatchesEnumeration(experts: Int, topK: Int) {
        for batch in 0...3 {
            let formula = Roofline.expectedExpertsTouched(experts: experts, topK: topK, batch: batch)
            let enumerated = Self.enumeratedExpertsTouched(experts: experts, topK: topK, batch: batch)
            #expect(abs(formula - enumerated) < 1e-12, "E \(experts) K \(topK) B \(batch): \(formula) vs \(enumerated)")
        }
    }

    /// Hand values: one token reads exactly K experts; Mixtral (E 8, K 2) at batch 2 reads
    /// 8·(1 − (3/4)²) = 3.5, at batch 4 8·(1 − 81/256) = 5.46875, not min(E, B·K) = 8.
    @Test func handValues() {
        #expect(Roofline.expectedExpertsTouched(experts: 8, topK: 2, batch: 1) == 2)
        #expect(Roofline.expectedExpertsTouched(experts: 8, topK: 2, batch: 2) == 3.5)
        #expect(Roofline.expectedExpertsTouched(experts: 8, topK: 2, batch: 4) == 5.46875)
        #expect(abs(Roofline.expectedExpertsTouched(experts: 8, topK: 2, batch: 256) - 8) < 1e-12)
    }

    /// The decode bytes of a tiny MoE model, counted by hand from its shapes.
    @Test func decodeBytesOfATinyMoEModel() {
        let c = ModelConfig(dim: 8, nLayers: 2, headDim: 4, hiddenDim: 16, nHeads: 2, nKVHeads: 1,
                            normEps: 1e-5, vocabSize: 10, ropeTheta: 1e6, moe: .init(numExperts: 4, numExpertsPerTok: 2))
        // Per layer: wqkv (2+2)·4 rows × 8 + wo 8 × 8 = 192 elements; two norms of 8; router 4 × 8;
        // one expert 3 · 8 · 16 = 384 elements. bf16: 2 bytes each.
        let attention = 192 * 2, norms = 2 * 8 * 2, router = 4 * 8 * 2, expert = 384 * 2
        #expect(Roofline.attentionBytes(c) == attention)
        #expect(Roofline.expertBytes(c) == expert)
        // Batch 2: 4·(1 − (1/2)²) = 3 experts expected; KV: 2 seqs × 5 tokens × K,V × 2 layers × 1 head × 4 × 2 bytes.
        let kv = 2 * 5 * 2 * 2 * 1 * 4 * 2
        let expected = 2 * (attention + norms + router + 3 * expert) + 10 * 8 * 2 + 2 * 8 * 2 + kv
        #expect(Roofline.bytesPerDecodeStep(c, batch: 2, context: 5, kvBytesPerElement: 2) == expected)
        // FP8: projections and experts 1 byte an element + 4 bytes per output row.
        #expect(Roofline.expertBytes(c, .fp8) == 384 + (2 * 16 + 8) * 4)
    }

    /// Per GPU of a 2-rank split of the same model, by hand: 1 of the 2 query heads, the one KV
    /// head replicated, half of each expert's hidden rows and of the vocabulary; norms, router
    /// and embedding rows whole.
    @Test func decodeBytesPerRankOfATensorParallelSplit() {
        let c = ModelConfig(dim: 8, nLayers: 2, headDim: 4, hiddenDim: 16, nHeads: 2, nKVHeads: 1,
                            normEps: 1e-5, vocabSize: 10, ropeTheta: 1e6, moe: .init(numExperts: 4, numExpertsPerTok: 2))
        // wqkv (1 + 2)·4 rows × 8 + wo 8 rows × 4 columns = 128 elements; an expert 3 · 8 · 8.
        let attention = 128 * 2, norms = 2 * 8 * 2, router = 4 * 8 * 2, expert = 3 * 8 * 8 * 2
        let kv = 2 * 5 * 2 * 2 * 1 * 4 * 2   // the KV head is on both ranks
        let expected = 2 * (attention + norms + router + 3 * expert) + 5 * 8 * 2 + 2 * 8 * 2 + kv
        #expect(Roofline.bytesPerDecodeStep(c, batch: 2, context: 5, kvBytesPerElement: 2, ranks: 2) == expected)
        #expect(Roofline.bytesPerDecodeStep(c, batch: 2, context: 5, kvBytesPerElement: 2, ranks: 1)
                == Roofline.bytesPerDecodeStep(c, batch: 2, context: 5, kvBytesPerElement: 2))
    }
}
