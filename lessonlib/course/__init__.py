"""The course's grading machinery: the helper every nbgrader test cell calls (:mod:`.grading`), real nbgrader
runs in a throwaway course (:mod:`.autograde`) and a learner's self-grading command (:mod:`.selfgrade`)."""
