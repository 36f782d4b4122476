"""Material that belongs to one lesson: lesson 00's categories and challenges (:mod:`.orientation`), lesson
03's side-by-side measurements (:mod:`.moe_vs_pruning`) and measured quality curve (:mod:`.quality_curve`)."""
