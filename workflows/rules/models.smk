# The model rules, written once: train -> sample -> evaluate (and likelihood where the domain scores
# held-out data) for every domain group of MODEL_RULES (filled in by workflows/rules/domains/*/common.smk),
# named <group>_train, the group's sample rules, <group>_evaluate, <group>_likelihood, and the
# group's target rule <group>; and <domain>_import, which prepares a user dataset (a config block with a
# `source`: the user's files) of each domain into the files that domain's built-in datasets have.


for group, table in MODEL_RULES.items():
    run = RUN.format(group=group)
    logs = f"{group}/{{dataset}}/{{model}}/seed{{seed}}"

    rule:
        name:
            f"{group}_train"
        input:
            unpack(train_inputs_of(group, table.train_inputs)),
        output:
            f"{run}/model.ckpt",
        log:
            f"logs/{logs}/train.log",
        benchmark:
            f"benchmarks/{logs}/train.tsv"
        priority: PRIORITY.train
        conda:
            "../envs/conda.yaml"
        threads: 8
        resources:
            **train_resources(model_entry_of(group)),
        params:
            config=model_config(group),
            data=data_dir(group),
            launcher=train_launcher,
        shell:
            "{params.launcher} dgm train --model {wildcards.model} --data {params.data} --config '{params.config}'"
            " --seed {wildcards.seed} --out {output} --threads {threads} 2> {log}"

    for sample_rule, files in table.samples.items():

        rule:
            name:
                sample_rule
            input:
                f"{run}/model.ckpt",
            output:
                **sample_outputs(group, files),
            log:
                f"logs/{logs}/sample.log",
            benchmark:
                f"benchmarks/{logs}/sample.tsv"
            priority: PRIORITY.sample
            conda:
                "../envs/conda.yaml"
            threads: 8
            params:
                n=sample_count(group),
                flags=table.sample_flags,
            shell:
                "dgm sample --checkpoint {input} -n {params.n} --seed {wildcards.seed} {params.flags}"
                " --out {output.samples} --timing {output.timing} --threads {threads} 2> {log}"

    rule:
        name:
            f"{group}_evaluate"
        input:
            unpack(evaluate_inputs(group, table.evaluate_inputs)),
        output:
            f"{run}/metrics.json",
        log:
            f"logs/{logs}/evaluate.log",
        benchmark:
            f"benchmarks/{logs}/evaluate.tsv"
        conda:
            "../envs/conda.yaml"
        threads: table.evaluate_threads
        params:
            domain=model_domain,
            data=data_dir(group),
        shell:
            "dgm evaluate --domain {params.domain} --samples {input.samples}"
            " --checkpoint {input.checkpoint} --reference {params.data}"
            " --out {output} --jobs {threads} 2> {log}"

    if table.likelihood:
        flag, held_out = table.likelihood

        rule:
            name:
                f"{group}_likelihood"
            input:
                checkpoint=f"{run}/model.ckpt",
                held_out=held_out,
            output:
                f"{run}/test_likelihood.json",
            log:
                f"logs/{logs}/likelihood.log",
            benchmark:
                f"benchmarks/{logs}/likelihood.tsv"
            conda:
                "../envs/conda.yaml"
            threads: 8
            params:
                flag=flag,
            shell:
                "dgm likelihood --checkpoint {input.checkpoint} {params.flag} {input.held_out} --out {output}"
                " --seed {wildcards.seed} --threads {threads} 2> {log}"

    rule:
        name:
            group
        input:
            domain_targets(group, "metrics.json"),
            table.extras,

    for domain, files in table.prepared.items():

        rule:
            name:
                f"{domain.replace('-', '_')}_import"
            input:
                lambda wildcards, group=group: source_files(group, wildcards.dataset),
            output:
                [f"{data_folder(group, '{dataset}')}/{name}" for name in files],
            log:
                f"logs/{group}/{{dataset}}/prepare.log",
            benchmark:
                f"benchmarks/{group}/{{dataset}}/prepare.tsv"
            wildcard_constraints:
                dataset=one_of(user_datasets(group, domain)),
            priority: PRIORITY.data
            conda:
                "../envs/conda.yaml"
            threads: 8
            params:
                source=lambda wildcards, group=group: source_block(
                    group, wildcards.dataset
                ),
                out=lambda wildcards, output: os.path.dirname(output[0]),
            shell:
                "dgm prepare --source {params.source:q} --out {params.out} --jobs {threads} 2> {log}"
