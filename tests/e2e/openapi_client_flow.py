"""The whole flow through a client generated from /openapi.json.

Run by the `openapi_conformance` e2e test with the generated package `client`
on PYTHONPATH: `python openapi_client_flow.py BASE_URL MERCHANT_KEY`. The client
is made with `raise_on_unexpected_status=True`, so an answer whose status the
document does not list raises; every answer must also parse into the type the
document names for it (a body, or a Problem for an error). Exits non-zero on
the first answer that does not.
"""

import datetime
import sys
import time
import uuid

from client import AuthenticatedClient, Client
from client.api.buyers import create_buyer, create_session
from client.api.claims import create_claim, get_claim
from client.api.operations import healthz, readyz
from client.api.orders import checkout_claim, get_order, list_orders, pay_order
from client.api.products import create_product
from client.api.sales import cancel_sale, create_sale, get_sale, list_sales, update_sale
from client.models import (
    BuyerCreated,
    Claim,
    CreateBuyer,
    CreateProduct,
    CreateSale,
    CreateSession,
    Order,
    OrderList,
    PatchSale,
    PayRequest,
    Problem,
    Product,
    Sale,
    SaleList,
    Session,
)

checked = 0


def expect(what, response, kind, status=None):
    """The answer parsed as `kind` (and had `status`, if given)."""
    global checked
    checked += 1
    parsed = response.parsed
    if not isinstance(parsed, kind):
        sys.exit(f"{what}: {response.status_code} parsed as {type(parsed).__name__}, not {kind.__name__}: "
                 f"{response.content[:300]!r}")
    if status is not None and int(response.status_code) != status:
        sys.exit(f"{what}: status {int(response.status_code)}, expected {status}")
    if isinstance(parsed, Problem) and int(parsed.status) != int(response.status_code):
        sys.exit(f"{what}: the problem's status {parsed.status} is not the answer's {int(response.status_code)}")
    return parsed


def main(base, merchant_key):
    anonymous = Client(base_url=base, raise_on_unexpected_status=True, timeout=40.0)
    merchant = AuthenticatedClient(base_url=base, token=merchant_key, raise_on_unexpected_status=True, timeout=40.0)

    expect("healthz", healthz.sync_detailed(client=anonymous), object, 200)
    expect("readyz", readyz.sync_detailed(client=anonymous), object)

    email = f"flow-{uuid.uuid4().hex[:12]}@example.com"
    signup = CreateBuyer(email=email, password="a long enough password", name="Flow")
    created = expect("sign up", create_buyer.sync_detailed(client=anonymous, body=signup), BuyerCreated, 201)
    expect("sign up again", create_buyer.sync_detailed(client=anonymous, body=signup), Problem, 409)
    session = expect("sign in", create_session.sync_detailed(
        client=anonymous, body=CreateSession(email=email, password="a long enough password")), Session, 200)
    expect("wrong password", create_session.sync_detailed(
        client=anonymous, body=CreateSession(email=email, password="not the password")), Problem, 401)
    buyer = AuthenticatedClient(base_url=base, token=session.token, raise_on_unexpected_status=True, timeout=40.0)
    assert created.token

    product = expect("product", create_product.sync_detailed(
        client=merchant, body=CreateProduct(title="Flow sneaker")), Product, 201)
    expect("product without a title", create_product.sync_detailed(
        client=merchant, body=CreateProduct(title="")), Problem, 422)

    now = datetime.datetime.now(datetime.timezone.utc)
    later = expect("scheduled sale", create_sale.sync_detailed(client=merchant, body=CreateSale(
        currency="usd", inventory=3, price=1999, product_id=product.id,
        starts_at=now + datetime.timedelta(hours=1))), Sale, 201)
    patched = expect("patch with If-Match", update_sale.sync_detailed(
        later.id, client=merchant, body=PatchSale(price=2499), if_match=f'"{later.version}"'), Sale, 200)
    expect("patch with a stale If-Match", update_sale.sync_detailed(
        later.id, client=merchant, body=PatchSale(price=2599), if_match=f'"{later.version}"'), Problem, 412)
    expect("cancel", cancel_sale.sync_detailed(later.id, client=merchant), Sale, 200)
    expect("patch a cancelled sale", update_sale.sync_detailed(
        later.id, client=merchant, body=PatchSale(price=2699), if_match=f'"{patched.version + 1}"'), Problem)

    sale = expect("sale starting now", create_sale.sync_detailed(client=merchant, body=CreateSale(
        currency="usd", inventory=1, price=1999, product_id=product.id, starts_at=now)), Sale, 201)
    deadline = time.monotonic() + 30
    while True:
        sale = expect("get sale", get_sale.sync_detailed(sale.id, client=merchant), Sale, 200)
        if getattr(sale.status, "value", sale.status) == "active":
            break
        if time.monotonic() > deadline:
            sys.exit(f"the sale did not start: {sale.status}")
        time.sleep(0.2)
    expect("list sales", list_sales.sync_detailed(client=merchant, limit=1), SaleList, 200)
    expect("list sales, limit too large", list_sales.sync_detailed(client=merchant, limit=1000), Problem, 422)
    expect("get sale as a buyer", get_sale.sync_detailed(sale.id, client=buyer), Problem, 401)
    expect("unknown sale", get_sale.sync_detailed("sale_" + "0" * 32, client=merchant), Problem, 404)
    expect("malformed sale id", get_sale.sync_detailed("nonsense", client=merchant), Problem, 404)

    claim = expect("claim", create_claim.sync_detailed(sale.id, client=buyer), Claim, 201)
    expect("claim again", create_claim.sync_detailed(sale.id, client=buyer), Claim, 200)
    expect("claim on an unknown sale", create_claim.sync_detailed("sale_" + "0" * 32, client=buyer), Problem, 404)
    expect("get claim", get_claim.sync_detailed(claim.id, client=buyer), Claim, 200)
    other = expect("another buyer", create_buyer.sync_detailed(client=anonymous, body=CreateBuyer(
        email=f"other-{uuid.uuid4().hex[:12]}@example.com", password="a long enough password")), BuyerCreated, 201)
    other_buyer = AuthenticatedClient(base_url=base, token=other.token, raise_on_unexpected_status=True, timeout=40.0)
    expect("sold out", create_claim.sync_detailed(sale.id, client=other_buyer), Problem, 409)

    # Stripe is not reachable from this app: the answer is an order being
    # verified or a 503 — either way, one the document describes.
    answer = checkout_claim.sync_detailed(claim.id, client=buyer, body=PayRequest(payment_method="pm_card_visa"))
    if int(answer.status_code) == 200:
        order = expect("checkout", answer, Order, 200)
        expect("get order", get_order.sync_detailed(order.id, client=buyer), Order, 200)
        expect("get order as merchant", get_order.sync_detailed(order.id, client=merchant), Order, 200)
        expect("pay a sale's order", pay_order.sync_detailed(
            order.id, client=buyer, body=PayRequest(payment_method="pm_card_visa")), Problem, 409)
    else:
        expect("checkout", answer, Problem, 503)
    expect("checkout without a method", checkout_claim.sync_detailed(
        claim.id, client=buyer, body=PayRequest(payment_method="")), Problem, 422)
    expect("list orders", list_orders.sync_detailed(client=buyer, limit=10), OrderList, 200)
    expect("list orders as merchant", list_orders.sync_detailed(client=merchant), OrderList, 200)
    expect("unknown order", get_order.sync_detailed("ord_" + "0" * 32, client=buyer), Problem, 404)
    print(f"generated client: {checked} answers read")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
