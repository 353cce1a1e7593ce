"""Pointwise positive semi-definite kernels as Equinox modules (no knowledge of PDEs)."""

from ._base import AbstractKernel as AbstractKernel
from ._base import AbstractPointKernel as AbstractPointKernel
from ._base import AbstractSeparableKernel as AbstractSeparableKernel
from ._base import AbstractStationaryKernel as AbstractStationaryKernel
from ._composite import Additive as Additive
from ._composite import Product as Product
from ._composite import Scaled as Scaled
from ._composite import Sum as Sum
from ._gibbs import Gibbs as Gibbs
from ._periodic import PeriodicGaussian as PeriodicGaussian
from ._stationary import Gaussian as Gaussian
from ._stationary import Matern52 as Matern52
from ._stationary import Matern72 as Matern72
from ._stationary import Polynomial as Polynomial
from ._stationary import RationalQuadratic as RationalQuadratic
from ._warped import AbstractWarp as AbstractWarp
from ._warped import LayerStretch as LayerStretch
from ._warped import Warped as Warped
