//! The smallest useful brewblox-host plugin: `GET /{name}/hello` → `{"hello": "world"}`.

use plugin_api::{export_plugin, Context, Json, Plugin, Request, Result, Route};

#[derive(Default)]
pub struct Hello;

impl Plugin for Hello {
    async fn startup(&self, ctx: &Context) -> Result<()> {
        ctx.route(
            Route::get("/hello").summary("Say hello"),
            |_req: Request| async { Ok(Json(serde_json::json!({"hello": "world"}))) },
        )?;
        tracing::info!("hello-plugin ready");
        Ok(())
    }
}

export_plugin!(Hello);
