//! Each provider's cache as the `api` sees it: [`ReadModel`] over [`Cache`], its errors turned into
//! [`ProviderError`].
//!
//! Here, not in `cache`, so that the arrow runs provider → cache only. It adds no behaviour: every method
//! is the cache's own read.

use super::{ControllerKind, Fragment, LabelFilter, ReadModel, Result};
use crate::cache::Cache;

impl ReadModel for Cache {
    fn machine(&self, scope: &str, id: &str) -> Result<Fragment> {
        Ok(Cache::machine(self, scope, id)?)
    }

    fn machines(&self, scope: &str, labels: &LabelFilter) -> Result<Vec<Fragment>> {
        Ok(Cache::machines(self, scope, labels)?)
    }

    fn controllers(&self, scope: &str) -> Result<Vec<Fragment>> {
        Ok(Cache::controllers(self, scope)?)
    }

    fn controller_list(&self, scope: &str) -> Result<bytes::Bytes> {
        Ok(Cache::controller_list(self, scope)?)
    }

    fn controller_of_machine(&self, scope: &str, machine_id: &str) -> Result<Vec<Fragment>> {
        Ok(Cache::controller_of_machine(self, scope, machine_id)?)
    }

    fn controller(&self, scope: &str, name: &str, kind: Option<ControllerKind>) -> Result<Fragment> {
        Ok(Cache::controller(self, scope, name, kind)?)
    }

    fn services(&self, scope: &str, labels: &LabelFilter) -> Result<Vec<Fragment>> {
        Ok(Cache::services(self, scope, labels)?)
    }

    fn gateways(&self, scope: &str) -> Result<Vec<Fragment>> {
        Ok(Cache::gateways(self, scope)?)
    }

    fn httproute(&self, scope: &str, name: &str) -> Result<Fragment> {
        Ok(Cache::httproute(self, scope, name)?)
    }

    fn admit_write(&self, scope: &str) -> Result<()> {
        Ok(Cache::admit_write(self, scope)?)
    }
}
