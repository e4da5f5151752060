//! Named features shared between plugins (the original's add/get semantics and wording).

use std::{collections::BTreeMap, sync::Mutex};

use crate::sync::Unpoisoned;
use plugin_abi::{error_code, FeatureArc, Feature_TO, FfiError};

#[derive(Default)]
pub struct FeatureRegistry {
    features: Mutex<BTreeMap<String, (String, FeatureArc)>>,
}

impl FeatureRegistry {
    /// Adds `feature` under `name`. A taken name is an error unless `exist_ok`, in which case
    /// the existing feature stays and `Ok(false)` says so.
    pub fn add(
        &self,
        plugin: &str,
        name: &str,
        exist_ok: bool,
        feature: FeatureArc,
    ) -> Result<bool, FfiError> {
        if name.is_empty() {
            return Err(FfiError::new(
                error_code::INVALID,
                "No feature identifier provided",
            ));
        }
        let mut features = self.features.locked();
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

    pub fn get(&self, name: &str) -> Result<FeatureArc, FfiError> {
        if name.is_empty() {
            return Err(FfiError::new(
                error_code::INVALID,
                "No feature identifier provided",
            ));
        }
        let features = self.features.locked();
        features
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
        let features = self.features.locked();
        features
            .iter()
            .map(|(name, (owner, _))| (name.clone(), owner.clone()))
            .collect()
    }
}
