def test_it_serves_the_login_page(client):
    response = client.get("/login/")
    assert response.status_code == 200
    assert b"Log in to MedCoT" in response.content
