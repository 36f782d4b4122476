"""Material that belongs to one lesson: lesson 00's categories and challenges (:mod:`.orientation`), lesson 01's
and 02's measurements in sentences (:mod:`.inference_costs`, :mod:`.architectures`), lesson 03a's MoE measurements
(:mod:`.mixture_of_experts`), lesson 03b's side-by-side measurements (:mod:`.moe_vs_pruning`) and measured quality
curve (:mod:`.quality_curve`), lesson 04's family, traffic and routing baselines (:mod:`.cascading`), and the
reference answers notebooks fall back on (:mod:`.references`)."""
