//! Named features shared between plugins: the registry every host keeps, written once so that
//! the real host and the SDK's test host answer `add_feature`/`get_feature` alike (the
//! add/get semantics and wording of brewblox-service's features).

use std::{
    collections::BTreeMap,
    sync::{Mutex, MutexGuard, PoisonError},
};

use crate::{error_code, FeatureArc, Feature_TO, FfiError};

/// Features by name, each with the plugin that added it.
#[derive(Default)]
pub struct FeatureRegistry {
    features: Mutex<BTreeMap<String, (String, FeatureArc)>>,
}

fn no_identifier() -> FfiError {
    FfiError::new(error_code::INVALID, "No feature identifier provided")
}

impl FeatureRegistry {
    /// Every step below leaves the map consistent, so a panic elsewhere while it was held
    /// (poison) changes nothing.
    fn locked(&self) -> MutexGuard<'_, BTreeMap<String, (String, FeatureArc)>> {
        self.features.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds `feature` under `name` for `plugin`. A taken name is an error unless `exist_ok`,
    /// in which case the existing feature stays and `Ok(false)` says so.
    pub fn add(
        &self,
        plugin: &str,
        name: &str,
        exist_ok: bool,
        feature: FeatureArc,
    ) -> Result<bool, FfiError> {
        if name.is_empty() {
            return Err(no_identifier());
        }
        let mut features = self.locked();
        if let Some((owner, _)) = features.get(name) {
            if exist_ok {
                return Ok(false);
            }
            return Err(FfiError::new(
                error_code::CONFLICT,
                format!("Feature \"{name}\" already registered (by plugin {owner})"),
            ));
        }
        features.insert(name.to_owned(), (plugin.to_owned(), feature));
        Ok(true)
    }

    /// The feature registered under `name`.
    pub fn get(&self, name: &str) -> Result<FeatureArc, FfiError> {
        if name.is_empty() {
            return Err(no_identifier());
        }
        self.locked()
            .get(name)
            .map(|(_, feature)| Feature_TO::from_sabi(feature.obj.shallow_clone()))
            .ok_or_else(|| {
                FfiError::new(
                    error_code::NOT_FOUND,
                    format!("No feature found for \"{name}\""),
                )
            })
    }

    /// (name, owning plugin) pairs, in name order.
    pub fn list(&self) -> Vec<(String, String)> {
        self.locked()
            .iter()
            .map(|(name, (owner, _))| (name.clone(), owner.clone()))
            .collect()
    }

    /// Drops every feature (and so the plugins' feature objects).
    pub fn clear(&self) {
        self.locked().clear();
    }
}
