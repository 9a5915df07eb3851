"""incentive-service's queries, one module per aggregate; each function takes the session and the org (the
recalculation worker, which serves every org, says so) and answers dataclasses or domain objects."""
