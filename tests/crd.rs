//! The checked-in CRD matches the Rust type.

#[test]
fn checked_in_crd_equals_generated() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/crds/scalerequest.yaml");
    let on_disk = std::fs::read_to_string(path).expect("crds/scalerequest.yaml exists");
    let generated = machinist::reconcile::crd_yaml();
    assert!(
        on_disk == generated,
        "crds/scalerequest.yaml is stale: regenerate it with `machinist crd > crds/scalerequest.yaml`"
    );
}
