//! The simulated platforms the driver's control device runs on in tests and the demo.
//!
//! [`SimPlatform`] has the KMCL model's full table. [`SimPlatformWithoutMmioSpace`] is the same
//! host whose table lacks the optional `VmbChannelGetMmioSpace` (as when the host's
//! `vmbkmclr.sys` does not export it): the driver must still work there, and say so
//! (QUERY_DRIVER, issue 8).

use vmbmmio_core::control::Platform;

use crate::kmcl::{HvsimKmcl, HvsimKmclWithoutMmioSpace, SimHandleCloser};
use crate::sections::{SimKernel, SimProcessRef};

/// KMCL from the KMCL model, kernel handles closed by the model, sections from the
/// object-manager model: the simulated counterpart of the glue's `WindowsPlatform`.
pub struct SimPlatform;

impl Platform for SimPlatform {
    type Kmcl = HvsimKmcl;
    type HandleCloser = SimHandleCloser;
    type Sections = SimKernel;
    type Process = SimProcessRef;
}

/// [`SimPlatform`] with a KMCL table that lacks the optional `VmbChannelGetMmioSpace`
/// ([`HvsimKmclWithoutMmioSpace`]).
pub struct SimPlatformWithoutMmioSpace;

impl Platform for SimPlatformWithoutMmioSpace {
    type Kmcl = HvsimKmclWithoutMmioSpace;
    type HandleCloser = SimHandleCloser;
    type Sections = SimKernel;
    type Process = SimProcessRef;
}
