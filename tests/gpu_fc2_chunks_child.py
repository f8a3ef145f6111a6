"""Child process of test_gpu_moe.py::test_fc2_column_chunks_bitwise_equal: runs every
FC2_CHUNK_CASES case under the environment it was started with (MOE12X_FC2_CHUNKS /
MOE12X_FC2_CHUNK_COLS are read once per process) and saves, per case and act_quant, the output
bits, the layer's workspace bytes and all columns' y bytes to the .npz named on the command line."""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_gpu_moe as T  # noqa: E402


def main(path: str) -> None:
    saved = {}
    for case in T.FC2_CHUNK_CASES:
        for act in T.ACT:
            bits, ws, y_all = T.run_fc2_chunk_case(case, act)
            saved[f"{case}:{act}:bits"] = bits
            saved[f"{case}:{act}:ws"] = np.int64(ws)
            saved[f"{case}:{act}:y"] = np.int64(y_all)
    np.savez(path, **saved)


if __name__ == "__main__":
    main(sys.argv[1])
