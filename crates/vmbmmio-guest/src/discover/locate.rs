//! The three discovery steps every agent command and the library's session take, in order: the
//! channel (by instance, or the only one of the interface type), its `uio_hv_generic` node
//! (binding the channel first when it is not bound), and the paired function and its BAR.
//!
//! They stay separate calls so a caller that reports progress (`status`) can show what it found
//! before a later step fails; [`Located::find`] takes all three.

use std::path::Path;

use vmbmmio_proto::ioctl::WireGuid;

use super::bind::bind_uio;
use super::error::DiscoverError;
use super::pci::{PairedFunction, find_paired_function};
use super::uio::UioDevice;
use super::vmbus::{UIO_HV_GENERIC, VmbusChannel, find_channel, find_only_channel};

/// What the agent looks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Target {
    /// The channel offer's interface type (the device host's configuration).
    pub interface_type: WireGuid,
    /// The channel's instance; `None`: the only channel of the interface type.
    pub instance: Option<WireGuid>,
    /// The paired function's shared-memory BAR.
    pub bar_index: u8,
}

impl Target {
    /// The channel: the one with the instance, or the only one of the interface type.
    pub fn channel(&self, root: &Path) -> Result<VmbusChannel, DiscoverError> {
        match self.instance {
            Some(instance) => find_channel(root, self.interface_type, instance),
            None => find_only_channel(root, self.interface_type),
        }
    }

    /// The channel's uio node, binding the channel to `uio_hv_generic` first when it is not
    /// bound (the channel's `driver` and `uio` are updated to say so).
    pub fn uio(&self, root: &Path, channel: &mut VmbusChannel) -> Result<UioDevice, DiscoverError> {
        if let Some(uio) = channel.uio.clone().filter(|_| channel.bound_to_uio()) {
            return Ok(uio);
        }
        let uio = bind_uio(root, channel)?;
        channel.driver = Some(UIO_HV_GENERIC.to_owned());
        channel.uio = Some(uio.clone());
        Ok(uio)
    }

    /// The channel's paired function and its BAR.
    pub fn function(
        &self,
        root: &Path,
        channel: &VmbusChannel,
    ) -> Result<PairedFunction, DiscoverError> {
        find_paired_function(root, channel.interface_instance, self.bar_index)
    }
}

/// The channel, its uio node and its paired function.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Located {
    /// The channel (bound to `uio_hv_generic`).
    pub channel: VmbusChannel,
    /// Its uio node.
    pub uio: UioDevice,
    /// The paired function.
    pub function: PairedFunction,
}

impl Located {
    /// Takes the three steps of `target` under the sysfs tree at `root`.
    pub fn find(root: &Path, target: &Target) -> Result<Self, DiscoverError> {
        let mut channel = target.channel(root)?;
        let uio = target.uio(root, &mut channel)?;
        let function = target.function(root, &channel)?;
        Ok(Self {
            channel,
            uio,
            function,
        })
    }
}
