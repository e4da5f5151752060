//! The smallest useful brewblox-host plugin: `GET /{name}/hello` → `{"hello": "world"}`.

use std::sync::Arc;

use plugin_api::prelude::*;
use serde::Serialize;

#[derive(Default)]
pub struct Hello;

/// What `GET /hello` answers.
#[derive(Serialize, JsonSchema)]
pub struct Greeting {
    /// Who is greeted.
    pub hello: String,
}

/// `GET /hello`.
pub async fn hello() -> Json<Greeting> {
    Json(Greeting {
        hello: "world".into(),
    })
}

impl Plugin for Hello {
    async fn startup(self: Arc<Self>, ctx: &Context) -> Result<()> {
        ctx.route(Route::get("/hello").summary("Say hello"), hello)?;
        tracing::info!("hello-plugin ready");
        Ok(())
    }
}

export_plugin!(Hello);

#[cfg(test)]
mod tests {
    use plugin_api::testing::TestHost;

    use super::*;

    #[tokio::test]
    async fn says_hello() {
        let host = TestHost::start(Hello).await.unwrap();
        let response = host.get("/hello").await;
        assert_eq!(response.status(), 200);
        assert_eq!(response.text(), r#"{"hello":"world"}"#);
    }
}
