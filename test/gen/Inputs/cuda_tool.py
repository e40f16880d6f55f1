"""Finds a CUDA toolkit program for the lit helpers: PATH, else $CUDA_HOME/bin,
else /usr/local/cuda/bin, else the given extra globs (e.g. a PyPI wheel's
bin/); None if it is nowhere."""
import glob
import os
import shutil


def find(name, extra_globs=()):
    places = [os.path.join(os.environ.get("CUDA_HOME", ""), "bin", name),
              os.path.join("/usr/local/cuda/bin", name)]
    for pattern in extra_globs:
        places += sorted(glob.glob(os.path.join(pattern, name)))
    return shutil.which(name) or next((p for p in places if os.path.isfile(p)), None)
