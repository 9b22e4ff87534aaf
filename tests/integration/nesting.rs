//! The same upload router nested under different prefixes: URLs follow the prefix.

use crate::common::*;
use axum::Router;
use intake::{Uploads, storage::LocalDisk};
use reqwest::multipart::{Form, Part};

#[tokio::test]
async fn urls_carry_the_prefix_the_router_is_nested_under() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let uploads = Uploads::new(LocalDisk::new(&root));
    let app = Router::new()
        .nest("/upload", uploads.clone().into_router())
        .nest("/api/v1/files", uploads.into_router())
        .route("/health", axum::routing::get(|| async { "ok" }));
    let server = TestServer::with_app(app, "", Some(dir), Some(root)).await;

    for prefix in ["/upload", "/api/v1/files"] {
        // Raw.
        let body = format!("uploaded under {prefix}");
        let res = bounded(
            "raw upload",
            server.client.post(server.absolute(&format!("{prefix}/raw?name=a.txt"))).body(body.clone()).send(),
        )
        .await
        .unwrap();
        let location = header(&res, "location").expect("Location");
        let json = assert_created(res).await;
        let id = json["files"][0]["id"].as_str().unwrap();
        assert_eq!(location, server.absolute(&format!("{prefix}/files/{id}")));
        assert_eq!(json["files"][0]["url"], location.as_str());
        let res = bounded("download via Location", server.client.get(server.absolute(&location)).send()).await.unwrap();
        assert_eq!(res.status(), 200);
        assert_eq!(bounded("body", res.text()).await.unwrap(), body);

        // Form.
        let form = Form::new()
            .part("one", Part::bytes(b"first".to_vec()).file_name("1.txt"))
            .part("two", Part::bytes(b"second".to_vec()).file_name("2.txt"));
        let res = bounded("form upload", server.client.post(server.absolute(&format!("{prefix}/form"))).multipart(form).send())
            .await
            .unwrap();
        let location = header(&res, "location").expect("Location");
        let json = assert_created(res).await;
        assert_eq!(json["files"][0]["url"], location.as_str());
        for (file, content) in json["files"].as_array().unwrap().iter().zip(["first", "second"]) {
            let url = file["url"].as_str().unwrap();
            assert_eq!(url, server.absolute(&format!("{prefix}/files/{}", file["id"].as_str().unwrap())));
            let res = bounded("download via url", server.client.get(server.absolute(url)).send()).await.unwrap();
            assert_eq!(res.status(), 200);
            assert_eq!(bounded("body", res.text()).await.unwrap(), content);
        }

        // Progress is served under the same prefix.
        let res = bounded("progress", server.client.get(server.absolute(&format!("{prefix}/progress/x"))).send()).await.unwrap();
        assert_problem(res, 400, "invalid_progress_id").await;
    }

    // The routers share one store: a file uploaded under one prefix downloads under the other.
    let res =
        bounded("raw upload", server.client.post(server.absolute("/upload/raw?name=s.txt")).body("shared").send()).await.unwrap();
    let id = assert_created(res).await["files"][0]["id"].as_str().unwrap().to_owned();
    let res = bounded("download", server.client.get(server.absolute(&format!("/api/v1/files/files/{id}"))).send()).await.unwrap();
    assert_eq!(bounded("body", res.text()).await.unwrap(), "shared");

    // The rest of the app is untouched.
    let res = bounded("health", server.client.get(server.absolute("/health")).send()).await.unwrap();
    assert_eq!(bounded("body", res.text()).await.unwrap(), "ok");
    server.assert_objects_well_formed();
}

#[tokio::test]
async fn a_deeply_nested_prefix_gives_clean_urls() {
    let app = Router::new().nest("/deep/nested/uploads", Uploads::new(intake::storage::InMemory::new()).into_router());
    let server = TestServer::with_app(app, "/deep/nested/uploads", None, None).await;
    let res = bounded("raw upload", server.client.post(server.url("/raw?name=a.txt")).body("x").send()).await.unwrap();
    let location = header(&res, "location").unwrap();
    let json = assert_created(res).await;
    let id = json["files"][0]["id"].as_str().unwrap();
    assert_eq!(location, server.absolute(&format!("/deep/nested/uploads/files/{id}")));
    assert!(!location["http://".len()..].contains("//"));
    let res = bounded("download", server.client.get(server.absolute(&location)).send()).await.unwrap();
    assert_eq!(res.status(), 200);
}
