//! The simulated platform the driver's control device runs on in tests and the demo.

use vmbmmio_core::control::Platform;

use crate::kmcl::{HvsimKmcl, SimHandleCloser};
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
