"""The torch test cases, shared by the CPU (test_torch_cpu.py) and CUDA (test_torch_gpu.py)
runs: the shapes PyTorch's own jagged SDPA tests use, compared with
F.scaled_dot_product_attention run per sequence on dense tensors, plus what PyTorch
cannot do (GQA on nested tensors, zero-length sequences, causal with differing q/kv
lengths) against the float64 reference, under the 2x rule."""

import warnings

import numpy as np
import torch
import torch.nn.functional as F

import jsdpa
import jsdpa.torch as jt
from jsdpa_testutil import SEED, attention_ref, check_2x, lse_err, plain_lowp, rng_for

try:
    import ml_dtypes  # registers numpy's "bfloat16" dtype
except ImportError:
    ml_dtypes = None
HAVE_NP_BF16 = ml_dtypes is not None

NP_NAMES = {torch.float16: "float16", torch.bfloat16: "bfloat16", torch.float32: "float32",
            torch.float64: "float64"}


def to_f64(t):
    return t.detach().to(torch.float64).cpu().numpy()


def offsets_tensor(lengths, device, dtype=torch.int64):
    off = [0]
    for n in lengths:
        off.append(off[-1] + int(n))
    return torch.tensor(off, dtype=dtype, device=device)


def njt(values, offsets):
    """[total, H, D] values -> the [B, H, j, D] jagged view SDPA takes."""
    return torch.nested.nested_tensor_from_jagged(values, offsets).transpose(1, 2)


def njt_values(nt):
    """[B, H, j, D] jagged -> [total, H, D] values (a view)."""
    return nt.transpose(1, 2).values()


class TorchCases:
    """Mixed into a unittest.TestCase that sets `device` and `dtypes`."""

    device = "cpu"
    dtypes = (torch.float32,)

    # ---------------------------------------------------------------- helpers

    def gen(self):
        g = torch.Generator(device="cpu")
        g.manual_seed(int(rng_for(self.id()).integers(1 << 62)))
        return g

    def randn(self, g, shape, dtype):
        return torch.randn(shape, generator=g, dtype=torch.float32).to(dtype).to(self.device)

    def dense_torch(self, q, k, v, q_off, kv_off, causal, scale=None, gqa=False):
        """F.scaled_dot_product_attention per sequence on dense [1, H, L, D] tensors in the
        inputs' dtype (None when torch's top-left causal would differ from ours)."""
        qo, ko = q_off.tolist(), kv_off.tolist()
        out = torch.zeros(q.shape[0], q.shape[1], v.shape[2], dtype=q.dtype, device=q.device)
        for b in range(len(qo) - 1):
            lq, lk = qo[b + 1] - qo[b], ko[b + 1] - ko[b]
            if lq == 0:
                continue
            if lk == 0 or (causal and lq != lk):
                return None
            qd = q[qo[b]:qo[b + 1]].transpose(0, 1)[None]
            kd = k[ko[b]:ko[b + 1]].transpose(0, 1)[None]
            vd = v[ko[b]:ko[b + 1]].transpose(0, 1)[None]
            o = F.scaled_dot_product_attention(qd, kd, vd, is_causal=causal, scale=scale,
                                               enable_gqa=gqa)
            out[qo[b]:qo[b + 1]] = o[0].transpose(0, 1)
        return out

    def compare(self, name, got_values, q, k, v, q_off, kv_off, causal, scale=None, gqa=False):
        """2x rule against the float64 reference; the baseline is torch's dense SDPA where
        torch can compute the case, else the plain same-precision implementation."""
        qn, kn, vn = to_f64(q), to_f64(k), to_f64(v)
        qo, ko = q_off.cpu().numpy(), kv_off.cpu().numpy()
        ref, _ = attention_ref(qn, kn, vn, qo, ko, causal=causal, scale=scale)
        base = self.dense_torch(q, k, v, q_off, kv_off, causal, scale, gqa)
        if base is not None:
            base = to_f64(base)
        else:
            lowp = NP_NAMES[q.dtype]
            if lowp == "bfloat16" and not HAVE_NP_BF16:
                # No numpy bfloat16: fp32 math rounded once to bf16 through torch.
                out32 = attention_ref(qn, kn, vn, qo, ko, causal=causal, scale=scale,
                                      compute=np.float32)[0]
                base = to_f64(torch.from_numpy(out32).to(torch.bfloat16))
            else:
                low = [x.astype(lowp) for x in (qn, kn, vn)]
                base = plain_lowp(*low, qo, ko, lowp, causal=causal, scale=scale)[0]
        check_2x(self, f"{name} {q.dtype} on {self.device}", to_f64(got_values), ref, base,
                 NP_NAMES[q.dtype])

    def sdpa_case(self, name, q_lens, kv_lens, heads, kv_heads, dim, causal, dtype, g,
                  dim_v=None, scale=None):
        dim_v = dim_v or dim
        q_off = offsets_tensor(q_lens, self.device)
        kv_off = q_off if list(kv_lens) == list(q_lens) else offsets_tensor(kv_lens, self.device)
        q = self.randn(g, (int(sum(q_lens)), heads, dim), dtype)
        k = self.randn(g, (int(sum(kv_lens)), kv_heads, dim), dtype)
        v = self.randn(g, (int(sum(kv_lens)), kv_heads, dim_v), dtype)
        gqa = heads != kv_heads
        nq, nk, nv = njt(q, q_off), njt(k, kv_off), njt(v, kv_off)
        backend = jsdpa.explain(nq, nk, nv, is_causal=causal, scale=scale,
                                enable_gqa=gqa).backend
        out = jt.scaled_dot_product_attention(nq, nk, nv, is_causal=causal, scale=scale,
                                              enable_gqa=gqa)
        self.assertTrue(out.is_nested)
        self.assertEqual(out.dim(), 4)
        self.assertIs(out.offsets(), q_off)
        self.assertEqual(out.dtype, dtype)
        self.assertEqual(out.device.type, torch.device(self.device).type)
        self.assertEqual((out.size(0), out.size(1), out.size(3)), (len(q_lens), heads, dim_v))
        self.compare(f"{name} [{backend}]", njt_values(out), q, k, v, q_off, kv_off, causal,
                     scale, gqa)
        return out

    # ---------------------------------------------------------------- PyTorch's cases

    def test_lengths_11_13_heads_8(self):
        g = self.gen()
        for dtype in self.dtypes:
            for dim in (16, 128):
                for causal in (False, True):
                    self.sdpa_case(f"[11,13] H8 d{dim} causal={causal}", [11, 13], [11, 13], 8,
                                   8, dim, causal, dtype, g)

    def test_single_sequence_of_length_1(self):
        g = self.gen()
        for dtype in self.dtypes:
            for causal in (False, True):
                self.sdpa_case(f"[1] causal={causal}", [1], [1], 8, 8, 16, causal, dtype, g)

    def test_packed_qkv_strided(self):
        """One [total, 3*H*D] projection chunked into q, k, v views: no .contiguous()."""
        g = self.gen()
        heads, dim, lens = 8, 16, [7, 19, 4]
        for dtype in self.dtypes:
            off = offsets_tensor(lens, self.device)
            proj = self.randn(g, (sum(lens), 3 * heads * dim), dtype)
            packed = torch.nested.nested_tensor_from_jagged(proj, off)
            q, k, v = (t.unflatten(-1, [heads, dim]).transpose(1, 2)
                       for t in packed.chunk(3, dim=-1))
            self.assertFalse(njt_values(q).is_contiguous())
            for causal in (False, True):
                out = jt.scaled_dot_product_attention(q, k, v, is_causal=causal)
                qv, kv, vv = (njt_values(t) for t in (q, k, v))
                self.compare(f"packed qkv causal={causal}", njt_values(out), qv, kv, vv, off,
                             off, causal)

    def test_constant_lengths_vs_dense(self):
        g = self.gen()
        batch, length, heads, dim = 3, 10, 4, 32
        for dtype in self.dtypes:
            dense_q, dense_k, dense_v = (self.randn(g, (batch, heads, length, dim), dtype)
                                         for _ in range(3))
            off = offsets_tensor([length] * batch, self.device)
            as_values = lambda t: t.transpose(1, 2).reshape(batch * length, heads, dim)
            for causal in (False, True):
                expect = F.scaled_dot_product_attention(dense_q, dense_k, dense_v,
                                                        is_causal=causal)
                out = jt.scaled_dot_product_attention(njt(as_values(dense_q), off),
                                                      njt(as_values(dense_k), off),
                                                      njt(as_values(dense_v), off),
                                                      is_causal=causal)
                got = njt_values(out).reshape(batch, length, heads, dim).transpose(1, 2)
                ref, _ = attention_ref(to_f64(as_values(dense_q)), to_f64(as_values(dense_k)),
                                       to_f64(as_values(dense_v)), off.cpu().numpy(),
                                       off.cpu().numpy(), causal=causal)
                check_2x(self, f"constant lengths causal={causal} {dtype}",
                         to_f64(as_values(got)), ref, to_f64(as_values(expect)),
                         NP_NAMES[dtype])

    def test_cross_attention_2_2_2_vs_2_1_27(self):
        g = self.gen()
        for dtype in self.dtypes:
            self.sdpa_case("cross q[2,2,2] kv[2,1,27]", [2, 2, 2], [2, 1, 27], 4, 4, 16, False,
                           dtype, g)

    # ---------------------------------------------------------------- beyond PyTorch

    def test_gqa(self):
        g = self.gen()
        for dtype in self.dtypes:
            for kv_heads in (2, 1):
                self.sdpa_case(f"gqa 8/{kv_heads}", [9, 30, 2], [9, 30, 2], 8, kv_heads, 64,
                               True, dtype, g)

    def test_zero_length_sequences(self):
        g = self.gen()
        for dtype in self.dtypes:
            self.sdpa_case("zero lengths", [0, 5, 0, 17, 0], [0, 5, 0, 17, 0], 4, 4, 32, True,
                           dtype, g)
            self.sdpa_case("zero kv lengths", [3, 5, 4], [0, 6, 0], 4, 4, 32, False, dtype, g)

    def test_causal_differing_lengths(self):
        g = self.gen()
        for dtype in self.dtypes:
            self.sdpa_case("causal q!=kv", [5, 3, 12, 1], [9, 3, 2, 30], 4, 2, 64, True, dtype,
                           g)

    def test_custom_scale_and_value_dim(self):
        g = self.gen()
        for dtype in self.dtypes:
            self.sdpa_case("scale 0.05, d_v 32", [6, 21], [6, 21], 2, 2, 64, False, dtype, g,
                           dim_v=32, scale=0.05)

    def test_attention_packed_api_lse_and_poison(self):
        g = self.gen()
        lens_q, lens_kv = [4, 0, 13, 7], [6, 3, 13, 0]
        for dtype in self.dtypes:
            q_off = offsets_tensor(lens_q, self.device, torch.int32)
            kv_off = offsets_tensor(lens_kv, self.device, torch.int32)
            q = self.randn(g, (sum(lens_q), 6, 64), dtype)
            k = self.randn(g, (sum(lens_kv), 2, 64), dtype)
            v = self.randn(g, (sum(lens_kv), 2, 64), dtype)
            out = torch.full((sum(lens_q), 6, 64), float("nan"), dtype=dtype, device=self.device)
            lse = torch.full((sum(lens_q), 6), float("nan"), device=self.device)
            got, got_lse = jt.attention(q, k, v, q_off, kv_off, is_causal=True, return_lse=True,
                                        out=out, out_lse=lse, max_seqlen_q=13, max_seqlen_kv=13)
            self.assertIs(got, out)
            self.assertIs(got_lse, lse)
            self.compare("attention() lse+poison", got, q, k, v, q_off, kv_off, True)
            ref_lse = attention_ref(to_f64(q), to_f64(k), to_f64(v), q_off.cpu().numpy(),
                                    kv_off.cpu().numpy(), causal=True)[1]
            e = lse_err(got_lse.cpu().numpy(), ref_lse)
            # LSE is fp32 from fp32 scores whatever the input dtype; exp2/log2 approximations
            # on the GPU leave ~1e-5 relative.
            self.assertLessEqual(e, 5e-4 if dtype in (torch.float16, torch.bfloat16) else 1e-4,
                                 f"lse error {e} ({dtype}); seed {SEED}")

    def test_attention_host_offsets(self):
        g = self.gen()
        lens = [5, 11]
        for dtype in self.dtypes:
            q = self.randn(g, (16, 2, 32), dtype)
            for off in (offsets_tensor(lens, "cpu"), [0, 5, 16]):
                got = jt.attention(q, q, q, off)
                dev_off = offsets_tensor(lens, self.device)
                self.compare("host offsets", got, q, q, q, dev_off, dev_off, False)

    def test_explain_nested(self):
        off = offsets_tensor([3, 4], self.device)
        q = njt(torch.ones(7, 2, 16, dtype=self.dtypes[0], device=self.device), off)
        e = jsdpa.explain(q, q, q, is_causal=True)
        self.assertIsInstance(e, jsdpa.Explanation)
        self.assertIn(e.backend, ("flash", "efficient", "math", "cpu"))
        self.assertEqual(e.reasons[e.backend], "")
        e2 = jsdpa.explain(njt_values(q), njt_values(q), njt_values(q), off)
        self.assertEqual(e2.backend, e.backend)

    # ---------------------------------------------------------------- errors

    def _qkv(self, heads=(4, 4, 4), dtypes=None):
        off = offsets_tensor([3, 5], self.device)
        dtypes = dtypes or (self.dtypes[0],) * 3
        return [njt(torch.ones(8, h, 16, dtype=d, device=self.device), off)
                for h, d in zip(heads, dtypes)]

    def test_error_mask(self):
        q, k, v = self._qkv()
        with self.assertRaises(ValueError) as cm:
            jt.scaled_dot_product_attention(q, k, v, attn_mask=torch.ones(1, dtype=torch.bool))
        self.assertIn("attn_mask", str(cm.exception))

    def test_error_dropout(self):
        q, k, v = self._qkv()
        with self.assertRaises(NotImplementedError) as cm:
            jt.scaled_dot_product_attention(q, k, v, dropout_p=0.1)
        self.assertIsInstance(cm.exception, RuntimeError)
        self.assertIn("dropout_p (0.1)", str(cm.exception))

    def test_error_not_nested(self):
        t = torch.ones(2, 4, 8, 16, device=self.device)
        with self.assertRaises(ValueError) as cm:
            jt.scaled_dot_product_attention(t, t, t)
        self.assertIn("nested", str(cm.exception))

    def test_error_strided_nested_layout(self):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch: the strided layout is a prototype
            t = torch.nested.nested_tensor([torch.ones(4, 3, 16), torch.ones(4, 5, 16)],
                                           device=self.device)
        with self.assertRaises(ValueError) as cm:
            jt.scaled_dot_product_attention(t, t, t)
        self.assertIn("torch.jagged", str(cm.exception))

    def test_error_ragged_dim(self):
        off = offsets_tensor([3, 5], self.device)
        t = torch.nested.nested_tensor_from_jagged(torch.ones(8, 4, 16, device=self.device), off)
        with self.assertRaises(ValueError) as cm:
            jt.scaled_dot_product_attention(t, t, t)
        self.assertIn("transpose(1, 2)", str(cm.exception))

    def test_error_heads(self):
        q, k, v = self._qkv(heads=(8, 2, 2))
        with self.assertRaises(RuntimeError) as cm:
            jt.scaled_dot_product_attention(q, k, v)
        self.assertIn("enable_gqa", str(cm.exception))
        q, k, v = self._qkv(heads=(6, 4, 4))
        with self.assertRaises(RuntimeError) as cm:
            jt.scaled_dot_product_attention(q, k, v, enable_gqa=True)
        self.assertIn("multiple", str(cm.exception))

    def test_error_dtype_mismatch(self):
        other = torch.float64 if self.dtypes[0] != torch.float64 else torch.float32
        q, k, v = self._qkv(dtypes=(self.dtypes[0], other, self.dtypes[0]))
        with self.assertRaises(ValueError) as cm:
            jt.scaled_dot_product_attention(q, k, v)
        self.assertIn("dtype", str(cm.exception))

    def test_error_key_value_offsets(self):
        k_off, v_off = offsets_tensor([3, 5], self.device), offsets_tensor([4, 4], self.device)
        q = njt(torch.ones(8, 4, 16, device=self.device), k_off)
        k = njt(torch.ones(8, 4, 16, device=self.device), k_off)
        v = njt(torch.ones(8, 4, 16, device=self.device), v_off)
        with self.assertRaises(ValueError) as cm:
            jt.scaled_dot_product_attention(q, k, v)
        self.assertIn("offsets", str(cm.exception))

    def test_error_requires_grad(self):
        q, k, v = self._qkv()
        qg = njt(torch.ones(8, 4, 16, device=self.device, dtype=q.dtype, requires_grad=True),
                 q.offsets())
        with self.assertRaises(RuntimeError) as cm:
            jt.scaled_dot_product_attention(qg, k, v)
        self.assertIn("no_grad", str(cm.exception))
        with torch.no_grad():
            jt.scaled_dot_product_attention(qg, k, v)

    def test_error_packed_arguments(self):
        q = torch.ones(8, 4, 16, device=self.device)
        off = offsets_tensor([3, 5], self.device)
        with self.assertRaises(ValueError) as cm:
            jt.attention(q[:, :, ::2], q[:, :, ::2], q[:, :, ::2], off)
        self.assertIn("last dimension", str(cm.exception))
        with self.assertRaises(ValueError) as cm:
            jt.attention(q.reshape(8, 64), q, q, off)
        self.assertIn("3-dimensional", str(cm.exception))
        with self.assertRaises(ValueError) as cm:
            jt.attention(q, q, q, off.float())
        self.assertIn("int32 or int64", str(cm.exception))
        with self.assertRaises(ValueError) as cm:
            jt.attention(q, q, q, torch.tensor([0, 9, 8], device=self.device),
                         validate_offsets=True)
        self.assertIn("offsets", str(cm.exception))
        with self.assertRaises(ValueError) as cm:
            jt.attention(q, q.to(torch.float64), q, off)
        self.assertIn("dtype", str(cm.exception))
        with self.assertRaises(ValueError) as cm:
            jt.attention(q, q, q, off, backend="fastest")
        self.assertIn("backend", str(cm.exception))
