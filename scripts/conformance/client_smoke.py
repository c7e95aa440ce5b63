"""A program written against the Python client generated from openapi.json (openapi-python-client):
a team member signs in, creates a workspace, an application and its keys; a user signs up with
the publishable key and reads /me with the access token; the secret key identifies itself.

Arguments: base URL, `authsome init --json`'s output. Every answer must be a documented one
(`raise_on_unexpected_status`) and parse into the generated models.
"""

import json
import sys
import time
import uuid

from authsome_client import AuthenticatedClient, Client
from authsome_client.api.applications import create as create_application
from authsome_client.api.auth import login, me as member_me
from authsome_client.api.customer import identify, me, sign_up
from authsome_client.api.keys import create_app_key
from authsome_client.api.workspaces import create as create_workspace
from authsome_client.models import (
    AppIdentity,
    Application,
    AppStatus,
    AuthResponse,
    CreatedKeyView,
    Environment,
    KeyKind,
    LoginRequest,
    LoginView,
    NewAppKey,
    NewAppKeyType,
    NewApplication,
    NewWorkspace,
    Plan,
    Role,
    SignUp,
    User,
    WorkspaceView,
)

BASE, INIT = sys.argv[1], json.loads(sys.argv[2])


def expect(kind, value):
    """The parsed answer, which must be the model `kind` (an error answer parses as ErrorBody)."""
    if not isinstance(value, kind):
        sys.exit(f"client: expected {kind.__name__}, got {value!r}")
    return value


def authenticated(token):
    return AuthenticatedClient(base_url=BASE, token=token, raise_on_unexpected_status=True)


anonymous = Client(base_url=BASE, raise_on_unexpected_status=True)
credentials = LoginRequest(email=INIT["ownerEmail"], password=INIT["ownerPassword"])
# The fuzzer before this made many failed attempts from this address: a documented 429 with
# Retry-After may answer first, which a well-behaved client waits out.
for _ in range(30):
    answer = login.sync_detailed(client=anonymous, body=credentials)
    if answer.status_code != 429:
        break
    time.sleep(min(int(answer.headers.get("retry-after", "1")), 10))
session = expect(LoginView, answer.parsed)
owner = authenticated(session.token)
assert member_me.sync(client=owner).email == INIT["ownerEmail"]

workspace = expect(WorkspaceView, create_workspace.sync(client=owner, body=NewWorkspace(name="Generated Client Co")))
assert workspace.plan == Plan.FREE and workspace.role == Role.OWNER, workspace

application = expect(
    Application,
    create_application.sync(
        workspace.id,
        client=owner,
        body=NewApplication(name="Generated Client App", environment=Environment.DEVELOPMENT),
        idempotency_key=str(uuid.uuid4()),
    ),
)
assert application.status == AppStatus.ACTIVE and application.environment == Environment.DEVELOPMENT

publishable = expect(
    CreatedKeyView,
    create_app_key.sync(application.id, client=owner, body=NewAppKey(type_=NewAppKeyType.PUBLISHABLE)),
)
secret = expect(
    CreatedKeyView,
    create_app_key.sync(application.id, client=owner, body=NewAppKey(type_=NewAppKeyType.SECRET, name="backend")),
)
assert publishable.secret.startswith("pk_test_") and secret.secret.startswith("sk_test_")

identity = expect(AppIdentity, identify.sync(application.id, client=authenticated(secret.secret)))
assert identity.id == application.id and identity.key_type == KeyKind.SECRET

email = "ada@generated-client.test"
signed_up = expect(
    AuthResponse,
    sign_up.sync(
        application.id,
        client=authenticated(publishable.secret),
        body=SignUp(email=email, password="analytical engine", name="Ada"),
    ),
)
user = expect(User, me.sync(application.id, client=authenticated(signed_up.session.token)))
assert user.id == signed_up.user.id and user.email == email and user.name == "Ada", user
print(f"client: {application.id}: keys, sign-up and /me through the generated client")
