"""Material that belongs to one lesson: lesson 00's categories and challenges (:mod:`.orientation`), lesson
01's sentences that follow the measurement (:mod:`.inference_costs`), lesson 02's attention variants side by
side (:mod:`.architectures`), lesson 03's side-by-side measurements (:mod:`.moe_vs_pruning`) and measured quality
curve (:mod:`.quality_curve`), lesson 04's family, traffic and routing baselines (:mod:`.cascading`), and the
reference answers the notebooks fall back on (:mod:`.references`)."""
