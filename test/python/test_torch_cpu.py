"""jsdpa.torch on CPU tensors (the cpu backend). Skipped with a reason without torch."""

import unittest

try:
    import torch
except ImportError:
    torch = None

if torch is not None:
    from jsdpa_torch_cases import TorchCases
else:

    class TorchCases:  # placeholder base: the class below is skipped
        pass


@unittest.skipIf(torch is None, "torch is not installed: the torch CPU tests need it")
class TorchCpu(TorchCases, unittest.TestCase):
    device = "cpu"
    dtypes = (torch.float32, torch.float64, torch.float16, torch.bfloat16) if torch else ()


if __name__ == "__main__":
    unittest.main()
