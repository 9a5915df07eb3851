// README's quick-start flow, written against the client generated from docs/openapi.json (openapi-typescript
// types + openapi-fetch). CI compiles it with `tsc --strict`: a response without a declared type (unknown,
// an index signature of never) or an operation missing from the document fails the build.
import createClient from "openapi-fetch";
import type { components, paths } from "./salesflow-api";

type Schemas = components["schemas"];
type Problem = Schemas["Problem"];

export function salesflow(baseUrl: string, token: string) {
  return createClient<paths, "application/json">({ baseUrl, headers: { Authorization: `Bearer ${token}` } });
}

function orThrow<T>(result: { data?: T; error?: Problem | unknown }, what: string): T {
  if (result.data === undefined) {
    const problem = result.error as Problem | undefined;
    throw new Error(`${what}: ${problem?.status} ${problem?.title}: ${problem?.detail}`);
  }
  return result.data;
}

export async function quickStart(api: ReturnType<typeof salesflow>): Promise<string> {
  const pipeline: Schemas["PipelineOut"] = orThrow(await api.POST("/v1/pipelines/templates/{key}/instantiate", {
    params: { path: { key: "inbound-web-form" }, header: { "Idempotency-Key": "quickstart-pipeline" } },
    body: {},
  }), "pipeline");
  const firstStage: string | undefined = pipeline.stages[0]?.name;

  const rep: Schemas["RepOut"] = orThrow(await api.POST("/v1/reps", {
    body: { name: "Ann", email: "ann@example.com", user_id: "ann" },
  }), "rep");
  const team: Schemas["TeamOut"] = orThrow(await api.POST("/v1/teams", {
    body: { name: "Inside", member_ids: [rep.user_id] },
  }), "team");
  // Every PUT is conditional: the org has no rule set yet, so its ETag is "0".
  const rules: Schemas["RuleSetOut"] = orThrow(await api.PUT("/v1/routing-rules", {
    params: { header: { "If-Match": '"0"' } },
    body: { rules: [{ id: "all", name: "All", fallback: true, triggers: ["lead_created"], pipeline_id: pipeline.id,
                      owner: { strategy: "round_robin", team_id: team.id } }] },
  }), "routing rules");

  const lead: Schemas["LeadOut"] = orThrow(await api.POST("/v1/leads", {
    body: { contact: { first_name: "Bo", email: "bo@acme-corp.com" }, company: { name: "Acme" }, country: "DE",
            value: "5000", currency: "EUR", source: "api" },
  }), "lead");
  const leads: Schemas["LeadOutPage"] = orThrow(await api.GET("/v1/leads", { params: { query: { limit: 10 } } }),
                                                "leads");
  const listed: string[] = leads.items.map((item) => item.id);

  const decisions = orThrow(await api.GET("/v1/assignments", { params: { query: { lead_id: lead.id } } }),
                            "assignments");
  const owner: string | null | undefined = decisions.items[0]?.owner_id;
  const position: Schemas["PositionOut"] = orThrow(await api.GET("/v1/positions/{lead_id}", {
    params: { path: { lead_id: lead.id } },
  }), "position");
  const stage: string | undefined = position.stage?.name;
  const funnel: Schemas["FunnelReport"] = orThrow(await api.GET("/v1/reports/funnel", {}), "funnel");
  const reached: Array<number | null | undefined> = funnel.rows.map((row) => row.reached);

  return [firstStage, rules.version, listed.length, owner, stage, reached.length].join(" ");
}
