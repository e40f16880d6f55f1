"""jsdpa.numpy (cpu backend) against the float64 reference, and every error path."""

import os
import subprocess
import sys
import threading
import unittest

import numpy as np

import jsdpa
import jsdpa.numpy as jn
from jsdpa_testutil import (
    SEED,
    attention_ref,
    check_2x,
    lse_err,
    offsets_of,
    plain_lowp,
    random_values,
    rng_for,
    strided_views,
)

try:
    import ml_dtypes

    BF16 = np.dtype(ml_dtypes.bfloat16)
except ImportError:
    BF16 = None

DTYPES = [np.float16, np.float32, np.float64]


def _lengths(rng, batch, lo, hi, zero_every=0):
    lens = rng.integers(lo, hi + 1, size=batch)
    if zero_every:
        lens[::zero_every] = 0
    return lens


class NumpyAttention(unittest.TestCase):
    def run_case(self, dtype, q_lens, kv_lens, heads, kv_heads, dim, dim_v, causal,
                 strided=False, scale=None, window=None, softcap=0.0, rng=None):
        dt = np.dtype(dtype)
        rng = rng or rng_for(self.id())
        q_off, kv_off = offsets_of(q_lens), offsets_of(kv_lens)
        tq, tk = int(q_off[-1]), int(kv_off[-1])
        if strided and tq == tk:
            q, k, v = strided_views(rng, tq, heads, kv_heads, dim, dim_v, dt)
        else:
            q = random_values(rng, tq, heads, dim, dt)
            k = random_values(rng, tk, kv_heads, dim, dt)
            v = random_values(rng, tk, kv_heads, dim_v, dt)
        out = np.full((tq, heads, dim_v), np.nan, dtype=dt)
        out_lse = np.full((tq, heads), np.nan, dtype=np.float32)
        kw = dict(causal=causal, scale=scale, window=window, softcap=softcap)
        got, lse = jn.attention(q, k, v, q_off, kv_off, is_causal=causal, scale=scale,
                                window=window, softcap=softcap, return_lse=True, out=out,
                                out_lse=out_lse)
        self.assertIs(got, out)
        self.assertIs(lse, out_lse)
        ref, ref_lse = attention_ref(q, k, v, q_off, kv_off, **kw)
        base, base_lse = plain_lowp(q, k, v, q_off, kv_off, dt, **kw)
        name = (f"{dt.name} q_lens={list(q_lens)[:8]} kv_lens={list(kv_lens)[:8]} "
                f"H={heads}/{kv_heads} d={dim}/{dim_v} causal={causal} strided={strided}")
        check_2x(self, name, got, ref, base, dt.name)
        e_lse, e_base = lse_err(lse, ref_lse), lse_err(base_lse, ref_lse)
        self.assertTrue(e_lse <= 2 * e_base + 1e-5,
                        f"{name}: lse error {e_lse:.3g} (plain {e_base:.3g}); seed {SEED}")

    def test_random_self_attention(self):
        rng = rng_for(self.id())
        for dtype in DTYPES:
            for causal in (False, True):
                lens = _lengths(rng, 5, 0, 40)
                lens[1] = 1
                self.run_case(dtype, lens, lens, 4, 4, 16, 16, causal, rng=rng)

    def test_gqa_and_mqa(self):
        rng = rng_for(self.id())
        for kv_heads in (3, 1):
            for dtype in DTYPES:
                lens = _lengths(rng, 4, 1, 30)
                self.run_case(dtype, lens, lens, 6, kv_heads, 8, 8, True, rng=rng)

    def test_cross_lengths_differ(self):
        rng = rng_for(self.id())
        for dtype in DTYPES:
            for causal in (False, True):
                q_lens = _lengths(rng, 6, 0, 25)
                kv_lens = _lengths(rng, 6, 0, 25)
                q_lens[0], kv_lens[0] = 7, 2  # causal: more queries than keys
                q_lens[1], kv_lens[1] = 3, 0  # queries without keys
                q_lens[2], kv_lens[2] = 0, 5
                self.run_case(dtype, q_lens, kv_lens, 4, 2, 16, 24, causal, rng=rng)

    def test_zero_length_every_fifth(self):
        rng = rng_for(self.id())
        lens = _lengths(rng, 11, 1, 33, zero_every=5)
        self.run_case(np.float32, lens, lens, 2, 2, 40, 40, True, rng=rng)

    def test_strided_packed_qkv(self):
        rng = rng_for(self.id())
        for dtype in DTYPES:
            lens = _lengths(rng, 4, 1, 20)
            self.run_case(dtype, lens, lens, 4, 2, 8, 8, False, strided=True, rng=rng)

    def test_head_dims(self):
        rng = rng_for(self.id())
        for dim, dim_v in ((1, 1), (40, 40), (59, 72), (128, 64)):
            lens = _lengths(rng, 3, 1, 17)
            self.run_case(np.float32, lens, lens, 2, 1, dim, dim_v, True, rng=rng)

    def test_scale_window_softcap(self):
        rng = rng_for(self.id())
        lens = _lengths(rng, 4, 1, 30)
        self.run_case(np.float32, lens, lens, 2, 2, 16, 16, False, scale=0.3, rng=rng)
        self.run_case(np.float32, lens, lens, 2, 2, 16, 16, True, window=(5, 0), rng=rng)
        self.run_case(np.float64, lens, lens, 2, 2, 16, 16, False, window=(3, 2), rng=rng)
        self.run_case(np.float32, lens, lens, 2, 2, 16, 16, False, softcap=2.5, rng=rng)

    @unittest.skipIf(BF16 is None, "ml_dtypes is not installed: no bfloat16 numpy arrays")
    def test_bfloat16(self):
        rng = rng_for(self.id())
        lens = _lengths(rng, 4, 0, 30)
        self.run_case(BF16, lens, lens, 4, 2, 16, 16, True, rng=rng)

    def test_default_outputs_and_offset_types(self):
        rng = rng_for(self.id())
        lens = [3, 0, 9]
        q = random_values(rng, 12, 2, 8, np.float32)
        ref, _ = attention_ref(q, q, q, offsets_of(lens), offsets_of(lens))
        for off in (offsets_of(lens), offsets_of(lens).astype(np.int32), [0, 3, 3, 12],
                    np.array([0, 3, 3, 12], dtype=np.uint16)):
            out = jn.attention(q, q, q, off)
            self.assertEqual(out.shape, (12, 2, 8))
            self.assertEqual(out.dtype, np.float32)
            self.assertLess(np.abs(out - ref).max(), 1e-5)

    def test_empty_batches(self):
        q = np.zeros((0, 2, 8), dtype=np.float32)
        out, lse = jn.attention(q, q, q, [0, 0, 0], return_lse=True)
        self.assertEqual(out.shape, (0, 2, 8))
        self.assertEqual(lse.shape, (0, 2))
        out = jn.attention(q, q, q, [0])
        self.assertEqual(out.shape, (0, 2, 8))

    def test_max_seqlen_hint(self):
        rng = rng_for(self.id())
        lens = [5, 9]
        q = random_values(rng, 14, 2, 8, np.float64)
        ref, _ = attention_ref(q, q, q, offsets_of(lens), offsets_of(lens), causal=True)
        out = jn.attention(q, q, q, offsets_of(lens), is_causal=True, max_seqlen_q=9,
                           max_seqlen_kv=9)
        self.assertLess(np.abs(out - ref).max(), 1e-12)

    def test_precision_fp64_on_fp32(self):
        rng = rng_for(self.id())
        lens = [17, 4]
        q = random_values(rng, 21, 2, 16, np.float32)
        ref, _ = attention_ref(q, q, q, offsets_of(lens), offsets_of(lens))
        out = jn.attention(q, q, q, offsets_of(lens), precision="fp64")
        # Accumulating in double leaves only the final rounding to float32.
        self.assertLessEqual(np.abs(out - ref).max(), np.abs(ref.astype(np.float32) - ref).max()
                             + 1e-7)

    def test_threads(self):
        """Concurrent calls from several threads through the shared context."""
        rng = rng_for(self.id())
        lens = [31, 7, 20]
        off = offsets_of(lens)
        inputs = [random_values(rng, 58, 2, 16, np.float32) for _ in range(6)]
        refs = [attention_ref(x, x, x, off, off, causal=True)[0] for x in inputs]
        results = [None] * len(inputs)
        errors = []

        def work(i):
            try:
                for _ in range(5):
                    results[i] = jn.attention(inputs[i], inputs[i], inputs[i], off,
                                              is_causal=True)
            except Exception as e:  # reported below, on the main thread
                errors.append(e)

        threads = [threading.Thread(target=work, args=(i,)) for i in range(len(inputs))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(errors, [])
        for got, ref in zip(results, refs):
            self.assertLess(np.abs(got - ref).max(), 1e-5)


class NumpyExplain(unittest.TestCase):
    def test_explain_cpu(self):
        q = np.ones((5, 2, 8), dtype=np.float32)
        e = jsdpa.explain(q, q, q, [0, 2, 5])
        self.assertIsInstance(e, jsdpa.Explanation)
        self.assertEqual(e.backend, "cpu")
        self.assertEqual(e.reasons["cpu"], "")
        for name in ("flash", "efficient", "math"):
            self.assertTrue(e.reasons[name], f"{name} should carry a reason: {e.reasons}")
        self.assertIn("cpu", str(e))
        self.assertIn("flash", str(e))

    def test_explain_forced_gpu_backend(self):
        q = np.ones((5, 2, 8), dtype=np.float32)
        with self.assertRaises(jsdpa.UnsupportedError) as cm:
            jsdpa.explain(q, q, q, [0, 2, 5], backend="math")
        self.assertIsInstance(cm.exception, RuntimeError)
        self.assertIn("math", str(cm.exception))

    def test_explain_rejects_other_types(self):
        with self.assertRaises(TypeError):
            jsdpa.explain([1.0], [1.0], [1.0], [0, 1])


class NumpyErrors(unittest.TestCase):
    def setUp(self):
        rng = rng_for(self.id())
        self.q = random_values(rng, 10, 4, 8, np.float32)
        self.k = random_values(rng, 10, 2, 8, np.float32)
        self.v = random_values(rng, 10, 2, 8, np.float32)
        self.off = np.array([0, 4, 10])

    def expect(self, exc, fragments, *args, **kwargs):
        q, k, v, off = args if args else (self.q, self.k, self.v, self.off)
        with self.assertRaises(exc) as cm:
            jn.attention(q, k, v, off, **kwargs)
        for f in fragments:
            self.assertIn(f, str(cm.exception))
        return cm.exception

    def test_bad_offsets(self):
        for bad, words in (([0, 12, 10], ["offsets", "12", "10"]),
                           ([1, 4, 10], ["offsets", "1"]),
                           ([0, 4, 9], ["offsets", "9", "10"]),
                           ([0, 6, 4, 10], ["offsets"])):
            e = self.expect(ValueError, words, self.q, self.k, self.v, np.array(bad))
            self.assertIsInstance(e, jsdpa.InvalidArgumentError)

    def test_offsets_dtype_and_rank(self):
        self.expect(ValueError, ["q_offsets", "float"], self.q, self.k, self.v,
                    np.array([0.0, 4.0, 10.0]))
        self.expect(ValueError, ["q_offsets", "1-dimensional"], self.q, self.k, self.v,
                    np.array([[0, 4, 10]]))
        self.expect(ValueError, ["kv_offsets", "1-dimensional"],
                    kv_offsets=np.array([], dtype=np.int64))

    def test_batch_mismatch(self):
        self.expect(ValueError, ["batch"], kv_offsets=np.array([0, 10]))

    def test_dtype_mismatch(self):
        self.expect(ValueError, ["dtype", "float16", "float32"], self.q,
                    self.k.astype(np.float16), self.v, self.off)

    def test_unsupported_dtype(self):
        self.expect(ValueError, ["q_values", "int32"], self.q.astype(np.int32), self.k, self.v,
                    self.off)

    def test_head_count_mismatch(self):
        q = np.ones((10, 3, 8), dtype=np.float32)
        self.expect(ValueError, ["heads", "3", "2"], q, self.k, self.v, self.off)

    def test_kv_heads_differ(self):
        v = np.ones((10, 1, 8), dtype=np.float32)
        self.expect(ValueError, ["heads"], self.q, self.k, v, self.off)

    def test_head_dim_mismatch(self):
        k = np.ones((10, 2, 16), dtype=np.float32)
        self.expect(ValueError, ["head_dim", "8", "16"], self.q, k, self.v, self.off)

    def test_kv_token_count_mismatch(self):
        v = np.ones((9, 2, 8), dtype=np.float32)
        self.expect(ValueError, ["total_tokens"], self.q, self.k, v, self.off)

    def test_wrong_rank(self):
        self.expect(ValueError, ["q_values", "3-dimensional", "[10, 32]"],
                    self.q.reshape(10, 32), self.k, self.v, self.off)
        self.expect(ValueError, ["v_values", "3-dimensional"], self.q, self.k,
                    self.v[None], self.off)

    def test_non_contiguous_last_dim(self):
        k = np.ones((10, 2, 16), dtype=np.float32)[:, :, ::2]
        self.expect(ValueError, ["k_values", "last dimension", "stride"], self.q, k, self.v,
                    self.off)

    def test_negative_stride(self):
        self.expect(ValueError, ["q_values", "negative stride"], self.q[::-1], self.k, self.v,
                    self.off)

    def test_not_an_array(self):
        self.expect(TypeError, ["q_values", "numpy.ndarray"], self.q.tolist(), self.k, self.v,
                    self.off)

    def test_bad_options(self):
        self.expect(ValueError, ["backend", "'fast'"], backend="fast")
        self.expect(ValueError, ["scale", "nan"], scale=float("nan"))
        self.expect(ValueError, ["window"], window=3)
        self.expect(ValueError, ["precision"], precision="fp8")

    def test_forced_gpu_backend_on_host(self):
        e = self.expect(RuntimeError, ["flash"], backend="flash")
        self.assertIsInstance(e, jsdpa.UnsupportedError)

    def test_bad_out(self):
        self.expect(ValueError, ["out", "shape"], out=np.empty((10, 4, 4), dtype=np.float32))
        self.expect(ValueError, ["out", "dtype"], out=np.empty((10, 4, 8), dtype=np.float64))
        ro = np.empty((10, 4, 8), dtype=np.float32)
        ro.flags.writeable = False
        self.expect(ValueError, ["writeable"], out=ro)
        self.expect(ValueError, ["out_lse", "return_lse"],
                    out_lse=np.empty((10, 4), dtype=np.float32))
        self.expect(ValueError, ["out_lse"], return_lse=True,
                    out_lse=np.empty((10, 4), dtype=np.float64))

    def test_nothing_written_on_error(self):
        out = np.full((10, 4, 8), np.nan, dtype=np.float32)
        self.expect(ValueError, ["offsets"], self.q, self.k, self.v, np.array([0, 12, 10]),
                    out=out)
        self.assertTrue(np.isnan(out).all())


class Library(unittest.TestCase):
    def test_context_is_shared_and_reports(self):
        a = jsdpa.get_context()
        self.assertIs(a, jsdpa.get_context())
        stats = a.cache_stats()
        for key in ("memory_hits", "disk_hits", "compiles", "disk_writes", "corrupt_entries",
                    "compile_ms", "load_ms", "disk_enabled"):
            self.assertIn(key, stats)
        has, why = a.has_gpu()
        self.assertIsInstance(has, bool)
        if not has:
            self.assertTrue(why)
        self.assertTrue(os.path.exists(jsdpa.library_path()))

    def test_exception_types(self):
        self.assertTrue(issubclass(jsdpa.InvalidArgumentError, ValueError))
        self.assertTrue(issubclass(jsdpa.UnsupportedError, RuntimeError))
        self.assertTrue(issubclass(jsdpa.OutOfMemoryError, MemoryError))
        self.assertTrue(issubclass(jsdpa.JsdpaError, RuntimeError))

    def test_library_not_found_names_places(self):
        code = ("import jsdpa, jsdpa.numpy as jn, numpy as np\n"
                "try:\n"
                "    jn.attention(*[np.ones((1, 1, 1), np.float32)] * 3, [0, 1])\n"
                "except jsdpa.LibraryNotFoundError as e:\n"
                "    print('NOTFOUND', e)\n")
        env = dict(os.environ, JSDPA_LIBRARY="/nonexistent/libjsdpa.so")
        r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                           timeout=120)
        self.assertIn("NOTFOUND", r.stdout, r.stderr)
        self.assertIn("/nonexistent/libjsdpa.so", r.stdout)
        self.assertIn("JSDPA_LIBRARY", r.stdout)

    def test_import_does_not_import_torch(self):
        code = "import sys, jsdpa, jsdpa.numpy; print('torch' in sys.modules)"
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           timeout=120)
        self.assertEqual(r.stdout.strip(), "False", r.stderr)


if __name__ == "__main__":
    unittest.main()
