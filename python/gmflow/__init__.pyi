# Type stubs of the gmflow package (the C extension gmflow._gmflow; docs/PYTHON.md).
from os import PathLike
from typing import Any, Literal, Optional, Sequence, Tuple, TypedDict, Union

import numpy as np
import numpy.typing as npt

_Array = npt.NDArray[np.float64]
_ArrayLike = npt.ArrayLike
_Path = Union[str, bytes, PathLike[str], PathLike[bytes]]

__version__: str
DEFAULT_METHOD: str

class SolverError(RuntimeError):
    t: float
    result: Optional[FlowResult]

class FlowStats(TypedDict):
    nsteps: int
    nfevals: int
    netfails: int
    nniters: int
    nncfails: int
    nliters: int
    qlast: int
    hlast: float
    njevals: int
    njvevals: int
    jacobian: str
    nrhs: int
    wall_s: float

class FlowResult:
    @property
    def t(self) -> _Array: ...
    @property
    def mu(self) -> _Array: ...
    @property
    def Sigma(self) -> _Array: ...
    @property
    def C(self) -> Optional[_Array]: ...
    @property
    def loss(self) -> _Array: ...
    @property
    def stats(self) -> FlowStats: ...
    @property
    def form(self) -> Literal["bw", "euclid"]: ...
    @property
    def method(self) -> str: ...

def flow(
    X: _ArrayLike,
    y: _ArrayLike,
    mu0: _ArrayLike,
    Sigma0: Optional[_ArrayLike],
    t_eval: _ArrayLike,
    *,
    form: Literal["bw", "euclid"] = "bw",
    method: Optional[str] = None,
    rtol: float = 1e-8,
    atol: float = 1e-10,
    C0: Optional[_ArrayLike] = None,
    max_steps: Optional[int] = None,
    jacobian: Optional[Literal["auto", "dq", "jvp", "dense"]] = None,
) -> FlowResult: ...
class Thm1Result(TypedDict):
    t: _Array
    sigma_rel_err: _Array
    mu_rel_err: _Array
    bw: FlowResult
    euclid: FlowResult

def thm1(
    X: _ArrayLike,
    y: _ArrayLike,
    mu0: _ArrayLike,
    Sigma0: Optional[_ArrayLike],
    t_eval: _ArrayLike,
    *,
    method: Optional[str] = None,
    rtol: float = 1e-11,
    atol: float = 1e-13,
    C0: Optional[_ArrayLike] = None,
    max_steps: Optional[int] = None,
    jacobian: Optional[Literal["auto", "dq", "jvp", "dense"]] = None,
) -> Thm1Result: ...
def rhs(
    X: _ArrayLike,
    y: _ArrayLike,
    mu: _ArrayLike,
    Sigma: _ArrayLike,
    form: Literal["bw", "euclid"] = "bw",
) -> Tuple[_Array, _Array, float]: ...
def expectations(x: _ArrayLike, mu: _ArrayLike, Sigma: _ArrayLike) -> dict[str, Any]: ...
def toy(
    n: int = 200,
    d: int = 3,
    teacher: Literal["relu", "mixture"] = "relu",
    width: int = 4,
    noise: float = 0.05,
    seed: int = 1,
) -> Tuple[_Array, _Array]: ...
def init(
    K: int, d: int, gamma: float = 0.5, seed: int = 2, return_C: bool = False
) -> Union[Tuple[_Array, _Array], Tuple[_Array, _Array, _Array]]: ...
def load_checkpoint(path: _Path) -> dict[str, Any]: ...
def load_idx(
    path: _Path, kind: Optional[Literal["images", "labels"]] = None
) -> npt.NDArray[np.uint8]: ...
