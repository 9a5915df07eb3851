"""Unsubscribe links are never signed with the public development secret in production."""
import pytest
from pydantic import ValidationError

from notification_service.config import Settings
from salesflow_shared.settings import DEV_JWT_SECRET

PRODUCTION = dict(environment="production", database_url="postgresql://db/notification", amqp_url="amqp://broker/")


def test_production_with_a_jwks_only_needs_its_own_unsubscribe_secret():
    with pytest.raises(ValidationError, match="SALESFLOW_UNSUBSCRIBE_SECRET"):
        Settings(**PRODUCTION, jwks_url="https://issuer.example/jwks.json")
    chosen = Settings(**PRODUCTION, jwks_url="https://issuer.example/jwks.json", unsubscribe_secret="u" * 40)
    assert chosen.resolved_unsubscribe_secret == "u" * 40


def test_the_unsubscribe_secret_derives_from_a_real_jwt_secret_and_never_from_the_dev_one_in_production():
    assert Settings(**PRODUCTION, jwt_secret="s" * 40).resolved_unsubscribe_secret == "unsubscribe:" + "s" * 40
    assert DEV_JWT_SECRET not in Settings(**PRODUCTION, jwt_secret="s" * 40).resolved_unsubscribe_secret
