import Testing
import Tensors

@Suite struct BFloat16Tests {
    @Test func roundTripsExactValues() {
        for v: Float in [0, 1, -2, 0.5, 3.140625, -65280, 1e-30] {
            #expect(BFloat16.toFloat(BFloat16.fromFloat(v)) == Float(bitPattern: BFloat16.fromFloat(v).toBits))
        }
        #expect(BFloat16.toFloat(BFloat16.fromFloat(1.0)) == 1.0)
    }

    @Test func roundsToNearestEven() {
        // 1 + 2^-8 lies exactly between two bf16 values (1 and 1 + 2^-7): ties go to even (1).
        #expect(BFloat16.toFloat(BFloat16.fromFloat(1 + 1.0 / 256)) == 1.0)
        // 1 + 3·2^-8 ties between 1 + 2^-7 and 1 + 2^-6: even is 1 + 2^-6.
        #expect(BFloat16.toFloat(BFloat16.fromFloat(1 + 3.0 / 256)) == 1 + 1.0 / 64)
        // Just above the midpoint rounds up.
        #expect(BFloat16.toFloat(BFloat16.fromFloat(1 + 1.0 / 256 + 1.0 / 65536)) == 1 + 1.0 / 128)
        #expect(BFloat16.toFloat(BFloat16.fromFloat(.nan)).isNaN)
        #expect(BFloat16.toFloat(BFloat16.fromFloat(.infinity)) == .infinity)
    }

    @Test func hostTensorStoresRequestedDType() {
        let t = HostTensor.owning([1.5, -2.25, 3], shape: [3], dtype: .bf16)
        #expect(t.data.count == 6)
        #expect(t.floats() == [1.5, -2.25, 3])
    }
}

private extension UInt16 { var toBits: UInt32 { UInt32(self) << 16 } }
