mod common;

use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, ListParams, Patch, PatchParams};

#[tokio::test]
async fn kube_rs_reads_and_scales_default_seed() {
    let sim = common::sim(kubesim::Seed::default_seed()).await;
    let client = common::client(&sim);
    let deploys: Api<Deployment> = Api::namespaced(client.clone(), "gc-storage");
    let d = deploys.get("api").await.unwrap();
    assert_eq!(d.spec.unwrap().replicas, Some(3));
    let list = deploys.list(&ListParams::default()).await.unwrap();
    assert_eq!(list.items.len(), 1);
    let patched = deploys
        .patch_scale(
            "api",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"replicas": 5}})),
        )
        .await
        .unwrap();
    assert_eq!(patched.spec.unwrap().replicas, Some(5));
    let err = deploys.get("nope").await.unwrap_err();
    match err {
        kube::Error::Api(s) => assert_eq!(s.code, 404),
        other => panic!("{other:?}"),
    }
}
