//! One name per type: a type that serde reads and writes the same way has one schema under
//! its own name; a type read and written differently (e.g. a `#[serde(default)]` field is
//! optional in a request but always present in an answer) gets two schemas with fixed
//! suffixes, [`INPUT_SUFFIX`] and [`OUTPUT_SUFFIX`], whichever of them a route uses.
//!
//! Without this, the two forms shared one name and the merge of the document renamed one of
//! them by the order routes were declared in (`Reading`, `Reading_2`, `plugin.Reading`), so
//! one type had several names and a name did not say which form it was.

use std::collections::{BTreeMap, BTreeSet};

use schemars::generate::Contract;
use serde_json::{Map, Value};

use crate::abi::openapi::{ref_map, rewrite_refs};

pub use crate::abi::openapi::{INPUT_SUFFIX, OUTPUT_SUFFIX};

/// The suffix of `contract`'s form of a type whose forms differ.
pub(super) fn suffix(contract: &Contract) -> &'static str {
    if contract.is_serialize() {
        OUTPUT_SUFFIX
    } else {
        INPUT_SUFFIX
    }
}

/// The other contract.
pub(super) fn opposite(contract: &Contract) -> Contract {
    if contract.is_serialize() {
        Contract::Deserialize
    } else {
        Contract::Serialize
    }
}

/// Which names of `mine` (the definitions of one contract) stand for a type whose form under
/// the other contract (`theirs`) differs, each with its new name.
///
/// A schema differs when its text differs once the references of both forms point at the
/// renamed forms: a struct whose own fields read and write alike but which contains a type
/// that does not is split too. A name `theirs` lacks (a type only reachable under one
/// contract) cannot be compared and keeps its name.
pub(super) fn split_forms(
    mine: &Map<String, Value>,
    theirs: &Map<String, Value>,
    my_suffix: &str,
    their_suffix: &str,
) -> BTreeMap<String, String> {
    let mut split: BTreeSet<String> = BTreeSet::new();
    // Each round splits at least one more name or ends: at most `mine.len()` rounds.
    loop {
        let my_refs = ref_map(&renames(&split, my_suffix));
        let their_refs = ref_map(&renames(&split, their_suffix));
        let newly: Vec<String> = mine
            .iter()
            .filter(|(name, _)| !split.contains(*name))
            .filter(|(name, my_schema)| {
                theirs.get(*name).is_some_and(|their_schema| {
                    let (mut a, mut b) = ((*my_schema).clone(), their_schema.clone());
                    rewrite_refs(&mut a, &my_refs);
                    rewrite_refs(&mut b, &their_refs);
                    a != b
                })
            })
            .map(|(name, _)| name.clone())
            .collect();
        if newly.is_empty() {
            return renames(&split, my_suffix);
        }
        split.extend(newly);
    }
}

fn renames(split: &BTreeSet<String>, suffix: &str) -> BTreeMap<String, String> {
    split
        .iter()
        .map(|name| (name.clone(), format!("{name}{suffix}")))
        .collect()
}

/// Renames the definitions as `renames` says and points every reference (in them and in
/// `schema`) at the new names.
pub(super) fn apply(
    schema: &mut Value,
    definitions: Map<String, Value>,
    renames: &BTreeMap<String, String>,
) -> Map<String, Value> {
    if renames.is_empty() {
        return definitions;
    }
    let refs = ref_map(renames);
    rewrite_refs(schema, &refs);
    definitions
        .into_iter()
        .map(|(name, mut value)| {
            rewrite_refs(&mut value, &refs);
            (renames.get(&name).cloned().unwrap_or(name), value)
        })
        .collect()
}
