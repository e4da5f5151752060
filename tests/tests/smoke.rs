use integration_tests::{Host, PluginDir};

#[test]
fn hello_plugin_serves() {
    let plugins = PluginDir::with(&["hello-plugin"]);
    let mut host = Host::builder(plugins.path()).start();
    let body: serde_json::Value = host.get("/hello").json().unwrap();
    assert_eq!(body, serde_json::json!({"hello": "world"}));
    assert!(host.stop().success());
}
