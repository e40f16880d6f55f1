"""jsdpa.torch on CUDA tensors (the GPU backends, on torch's current stream). Skipped with
a reason without a CUDA build of torch and a visible GPU. The log names the card."""

import sys
import unittest

try:
    import torch
except ImportError:
    torch = None

HAVE_CUDA = torch is not None and torch.cuda.is_available()
if torch is None:
    WHY = "torch is not installed"
elif not HAVE_CUDA:
    WHY = "torch sees no CUDA device"
else:
    WHY = ""

if HAVE_CUDA:
    import jsdpa
    import jsdpa.torch as jt
    from jsdpa_torch_cases import TorchCases, njt, offsets_tensor
else:

    class TorchCases:  # placeholder base: the class below is skipped
        pass


def setUpModule():
    if HAVE_CUDA:
        print(f"\njsdpa GPU tests on {torch.cuda.get_device_name()} (torch {torch.__version__}, "
              f"CUDA {torch.version.cuda}); libjsdpa: {jsdpa.library_path()}", file=sys.stderr)


@unittest.skipUnless(HAVE_CUDA, WHY)
class TorchGpu(TorchCases, unittest.TestCase):
    device = "cuda"
    dtypes = (torch.float16, torch.bfloat16, torch.float32) if HAVE_CUDA else ()

    def test_head_dims(self):
        g = self.gen()
        for dtype, dim in ((torch.float16, 40), (torch.float16, 96), (torch.float16, 256),
                           (torch.bfloat16, 72), (torch.bfloat16, 256)):
            self.sdpa_case(f"d{dim}", [37, 130, 1, 64], [37, 130, 1, 64], 4, 2, dim, True, dtype,
                           g)

    def test_backend_choice_is_logged(self):
        off = offsets_tensor([3, 4], "cuda")
        for dtype in self.dtypes:
            q = njt(torch.ones(7, 2, 64, dtype=dtype, device="cuda"), off)
            e = jsdpa.explain(q, q, q)
            print(f"\n  {dtype}: {e.backend}; " + "; ".join(
                f"{n}: {r or 'ok'}" for n, r in e.reasons.items()), file=sys.stderr)

    def test_current_stream(self):
        """The call runs on torch's current stream: its input is produced on a side stream
        behind a queue of slow matmuls, so a launch on any other stream would read it
        unwritten."""
        g = self.gen()
        lens = [300, 41]
        off = offsets_tensor(lens, "cuda")
        q = self.randn(g, (sum(lens), 4, 64), torch.float16)
        big = torch.randn(4096, 4096, device="cuda")
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(4):
                big = big @ big / 64
            qs = q * 2 + (big[0, 0] * 0).half()
            out = jt.attention(qs, qs, qs, off, is_causal=True)
        stream.synchronize()
        self.compare("side stream", out, qs, qs, qs, off, off, True)

    def test_no_torch_sync(self):
        """The Python layer adds no host sync (torch's sync debug mode raises on one)."""
        off = offsets_tensor([17, 5], "cuda")
        q = torch.randn(22, 4, 64, dtype=torch.float16, device="cuda")
        nq = njt(q, off)
        jt.scaled_dot_product_attention(nq, nq, nq)  # first call may compile
        torch.cuda.set_sync_debug_mode("error")
        try:
            jt.scaled_dot_product_attention(nq, nq, nq, is_causal=True)
            jt.attention(q, q, q, off)
        finally:
            torch.cuda.set_sync_debug_mode("default")

    def test_device_offsets_errors_recorded(self):
        """Malformed device offsets: nothing is written, and the recorded error comes back
        from check_device_errors."""
        q = torch.randn(8, 2, 64, dtype=torch.float16, device="cuda")
        bad = torch.tensor([0, 9, 8], device="cuda")
        out = torch.full_like(q, float("nan"))
        jt.attention(q, q, q, bad, out=out)
        with self.assertRaises(jsdpa.InvalidArgumentError):
            jt.check_device_errors()
        self.assertTrue(torch.isnan(out).all().item())
        jt.check_device_errors()  # cleared

    def test_error_device_mismatch(self):
        off = offsets_tensor([3, 5], "cuda")
        q = njt(torch.ones(8, 4, 16, device="cuda"), off)
        k = njt(torch.ones(8, 4, 16), offsets_tensor([3, 5], "cpu"))
        with self.assertRaises(ValueError) as cm:
            jt.scaled_dot_product_attention(q, k, k)
        self.assertIn("device", str(cm.exception))

    def test_fp64_on_gpu_runs_or_is_refused_clearly(self):
        g = self.gen()
        q = self.randn(g, (8, 2, 16), torch.float64)
        off = offsets_tensor([3, 5], "cuda")
        try:
            out = jt.attention(q, q, q, off)
        except jsdpa.JsdpaError as e:
            self.assertTrue(any(w in str(e).lower() for w in ("fp64", "float64", "double")),
                            f"the refusal should name the dtype: {e}")
            print(f"\n  fp64 on the GPU is refused: {e}", file=sys.stderr)
            return
        self.compare("fp64 on the GPU", out, q, q, q, off, off, False)


if __name__ == "__main__":
    unittest.main()
