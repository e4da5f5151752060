//! The plugin as a whole, on the SDK's test host: its routes, feature, simulation and what
//! it publishes, with no host process and no broker.

use std::time::Duration;

use plugin_api::{abi::asyncapi::Channel, testing::TestHost, QoS, Repeat};
use serde_json::{json, Value};

use crate::{DevicePlugin, DeviceState};

async fn start(update_interval: f64) -> TestHost<DevicePlugin> {
    TestHost::builder(DevicePlugin::default())
        .name("fermenter")
        .arg("device-id", "f1")
        .arg("update-interval", update_interval)
        .start()
        .await
        .expect("the device plugin starts")
}

#[tokio::test]
async fn serves_its_state_and_takes_a_new_setpoint() {
    let host = start(0.0).await;
    let state: DeviceState = host.get("/device/state").await.json().unwrap();
    assert_eq!(state.device_id, "f1");

    let response = host
        .put_json("/device/setpoint", &json!({"setpoint": 21.5}))
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.json::<DeviceState>().unwrap().setpoint, 21.5);
    let state: DeviceState = host.get("/device/state").await.json().unwrap();
    assert_eq!(state.setpoint, 21.5);
}

#[tokio::test]
async fn a_bad_setpoint_is_a_400_naming_the_field_and_changes_nothing() {
    let host = start(0.0).await;
    let before: DeviceState = host.get("/device/state").await.json().unwrap();
    for body in [
        json!({"setpoint": "20"}),
        json!({}),
        json!({"setpoint": null}),
        json!({"setpoint": 500}),
    ] {
        let response = host.put_json("/device/setpoint", &body).await;
        assert_eq!(response.status(), 400, "{body}");
        assert_eq!(
            response.json::<Value>().unwrap()["field"],
            "setpoint",
            "{body}"
        );
    }
    let after: DeviceState = host.get("/device/state").await.json().unwrap();
    assert_eq!(after.setpoint, before.setpoint);
}

#[tokio::test]
async fn the_device_feature_answers_the_state() {
    let host = start(0.0).await;
    let state: DeviceState = host.feature("device", &Value::Null).await.unwrap();
    assert_eq!(state.device_id, "f1");
}

#[tokio::test]
async fn a_zero_interval_disables_the_simulation() {
    let host = start(0.0).await;
    assert_eq!(host.step("device simulation").await.unwrap(), Repeat::Stop);
    assert!(host.published().is_empty());
}

#[tokio::test(start_paused = true)]
async fn each_update_goes_to_both_eventbuses_and_the_will_clears_the_state() {
    let host = start(5.0).await;
    let before: DeviceState = host.get("/device/state").await.json().unwrap();
    assert_eq!(
        host.step("device simulation").await.unwrap(),
        Repeat::Continue
    );
    // The publisher task runs beside the simulation: wait (bounded) for its three messages.
    let wait = Duration::from_secs(5);
    let amqp = host
        .wait_published(wait, |m| m.routing == "fermenter")
        .await
        .unwrap();
    assert_eq!(amqp.exchange, "brewcast");
    let published: DeviceState = amqp.json().unwrap();
    assert_ne!(published.updated, before.updated, "a new state");

    let history = host
        .wait_mqtt_published(wait, |m| m.topic == "brewcast/history/fermenter")
        .await
        .unwrap();
    assert!(!history.retain);
    let event: Value = history.json().unwrap();
    assert_eq!(event["key"], "fermenter");
    assert!(event["data"]["f1"]["temperature[degC]"].is_f64(), "{event}");
    let state = host
        .wait_mqtt_published(wait, |m| m.topic == "brewcast/state/fermenter")
        .await
        .unwrap();
    assert!(state.retain);
    // One update, one message of each.
    assert_eq!(host.published().len(), 1, "{:?}", host.published());
    assert_eq!(host.mqtt_published().len(), 2);
    assert_eq!(state.json::<Value>().unwrap()["data"]["device_id"], "f1");

    let will = host.mqtt_will().expect("a will");
    assert_eq!(will.topic, "brewcast/state/fermenter");
    assert_eq!(will.json::<Value>().unwrap()["data"], Value::Null);
}

/// Steps the simulation once and waits (bounded) for the publisher task's three messages.
async fn one_update(host: &TestHost<DevicePlugin>) {
    assert_eq!(
        host.step("device simulation").await.unwrap(),
        Repeat::Continue
    );
    let wait = Duration::from_secs(5);
    host.wait_published(wait, |m| m.routing == "fermenter")
        .await
        .unwrap();
    for topic in ["brewcast/history/fermenter", "brewcast/state/fermenter"] {
        host.wait_mqtt_published(wait, |m| m.topic == topic)
            .await
            .unwrap();
    }
}

/// The top-level property names of a declared payload (a named schema in `x-schemas`).
fn declared_properties(payload: &Value) -> Vec<String> {
    let name = payload["$ref"]
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap();
    let mut names: Vec<String> = payload["x-schemas"][name]["properties"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    names.sort();
    names
}

fn keys(message: &Value) -> Vec<String> {
    let mut names: Vec<String> = message.as_object().unwrap().keys().cloned().collect();
    names.sort();
    names
}

#[tokio::test(start_paused = true)]
async fn every_message_goes_on_a_declared_channel_with_the_declared_type() {
    let host = start(5.0).await;
    one_update(&host).await;
    let declared = host.declared_publications();
    assert_eq!(declared.len(), 3, "{declared:#?}");
    let on = |channel: Channel| {
        declared
            .iter()
            .find(|p| p.channel == channel)
            .unwrap_or_else(|| panic!("{channel:?} is not declared: {declared:#?}"))
    };

    let [amqp] = host.published().try_into().unwrap();
    let declaration = on(Channel::Amqp {
        exchange: amqp.exchange.clone(),
        exchange_type: amqp.exchange_type.clone(),
        routing: amqp.routing.clone(),
    });
    assert_eq!(declaration.message, "DeviceState");
    let body: Value = amqp.json().unwrap();
    assert_eq!(keys(&body), declared_properties(&declaration.payload));

    let mut messages = host.mqtt_published();
    messages.extend(host.mqtt_will());
    assert_eq!(messages.len(), 3, "history, state and the will");
    for message in messages {
        let declaration = on(Channel::Mqtt {
            topic: message.topic.clone(),
            qos: u8::from(message.qos == QoS::AtLeastOnce),
            retain: message.retain,
        });
        let expected = if message.topic.contains("/history/") {
            "HistoryEvent"
        } else {
            "StateEvent"
        };
        assert_eq!(declaration.message, expected, "{}", message.topic);
        let body: Value = message.json().unwrap();
        assert_eq!(keys(&body), declared_properties(&declaration.payload));
    }
}

#[tokio::test]
async fn a_hot_swap_keeps_the_setpoint_and_the_simulated_temperature() {
    let old = start(0.0).await;
    let response = old
        .put_json("/device/setpoint", &json!({"setpoint": 30.5}))
        .await;
    assert_eq!(response.status(), 200);
    old.plugin()
        .device
        .get()
        .unwrap()
        .advance(Duration::from_secs(120));
    let before: DeviceState = old.get("/device/state").await.json().unwrap();
    let state = old.handover().await.unwrap().expect("a state");
    assert!(old.context().is_retiring());

    let new = TestHost::builder(DevicePlugin::default())
        .arg("update-interval", 0.0)
        .handed_over(state)
        .start()
        .await
        .unwrap();
    assert_eq!(new.handover_outcome(), plugin_api::HandedOver::Accepted(()));
    let after: DeviceState = new.get("/device/state").await.json().unwrap();
    assert_eq!(after.setpoint, 30.5);
    assert_eq!(after.temperature, before.temperature);
    assert_eq!((after.heater, after.cooler), (before.heater, before.cooler));
}

#[tokio::test]
async fn a_handed_over_setpoint_out_of_range_is_refused() {
    let bad = json!({"temperature": 20.0, "setpoint": 500.0, "ambient": 20.0,
                     "heater": false, "cooler": false});
    let state = plugin_api::Handover::json(crate::STATE_VERSION, &bad).unwrap();
    let new = TestHost::builder(DevicePlugin::default())
        .arg("update-interval", 0.0)
        .handed_over(state)
        .start()
        .await
        .unwrap();
    assert!(matches!(
        new.handover_outcome(),
        plugin_api::HandedOver::Refused(_)
    ));
    let after: DeviceState = new.get("/device/state").await.json().unwrap();
    assert_eq!(after.setpoint, crate::chamber::DEFAULT_SETPOINT);
}
