//! The host's layout script (`hot-code.ld`, written by `bench/scripts/link-order`) is one
//! the release build can use: a malformed one would only make the build's probe fail and
//! the code keep the default layout, which no other test would notice.

#[test]
fn the_hosts_layout_script_is_a_well_formed_list_of_distinct_patterns() {
    let script = include_str!("../hot-code.ld");
    let found = link_layout::patterns(script).unwrap();
    assert!(found.len() > 500, "only {} patterns", found.len());
}
