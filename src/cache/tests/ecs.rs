//! The provider-neutral ingest the ECS poller uses.

use std::collections::BTreeMap;

use super::fixtures::*;
use crate::cache::ReadError;
use crate::cache::model::{ControllerRef, Resources};
use crate::cache::{Cache, ControllerKind, ControllerRecord, Machine, Service};

fn task(id: &str, service: &str) -> Machine {
    Machine {
        id: id.into(),
        status: "Running".into(),
        provider_status: Some("RUNNING".into()),
        ready: true,
        start_time: None,
        image: "img".into(),
        image_digest: None,
        labels: BTreeMap::from([("svc".to_string(), service.to_string())]),
        controller: Some(ControllerRef {
            name: service.into(),
            kind: "Service".into(),
            api_version: "ecs".into(),
        }),
        resources: Resources::default(),
        containers: vec![],
    }
}

fn svc(name: &str, replicas: i32) -> ControllerRecord {
    ControllerRecord {
        kind: ControllerKind::Service,
        name: name.into(),
        replicas,
        ready_replicas: replicas,
        labels: BTreeMap::new(),
        provider_metadata: BTreeMap::new(),
    }
}

#[test]
fn ecs_scopes_refresh_whole_and_targeted() {
    let cache = Cache::new_ecs(vec!["c1".into(), "c2".into()]);
    assert!(matches!(cache.controllers("c1"), Err(ReadError::NotReady { provider: "ecs", .. })));
    assert!(matches!(cache.controllers("zz"), Err(ReadError::ScopeNotWatched { scope_kind: "cluster", .. })));
    cache.replace_scope("c1", vec![svc("web", 2)], vec![task("t1", "web"), task("t2", "web")], vec![]);
    assert!(!cache.synced());
    cache.replace_scope(
        "c2",
        vec![],
        vec![],
        vec![Service { name: "lb".into(), labels: BTreeMap::new(), ports: vec![] }],
    );
    assert!(cache.synced());

    let web =
        controller(&cache.controller("c1", "web", Some(ControllerKind::Deployment)).expect("hint ignored"));
    assert_eq!(web.machines.len(), 2);
    assert_eq!(web.provider_metadata, BTreeMap::new());
    assert_eq!(names(&cache.controller_of_machine("c1", "t2").expect("of")), ["web"]);

    cache.upsert_controller("c1", svc("web", 1), vec![task("t2", "web")]);
    let web = controller(&cache.controller("c1", "web", None).expect("web"));
    assert_eq!((web.replicas, web.machines.len()), (1, 1));
    assert!(matches!(cache.machine("c1", "t1"), Err(ReadError::NotFound(_))));

    cache.replace_scope("c1", vec![], vec![], vec![]);
    assert!(cache.controllers("c1").expect("empty").is_empty());
    assert_eq!(cache.services("c2", &[]).expect("services").len(), 1);
}
